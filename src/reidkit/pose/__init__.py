"""Body keypoint estimators (:class:`reidkit.data.keypoints.KeypointSource`) and the cached estimation of a folder
or a dataset into a keypoint file (``reidkit keypoints``).

* :mod:`.mediapipe_pose`: :class:`~.mediapipe_pose.MediaPipePose`, MediaPipe Pose (legacy solution) mapped to
  COCO-17; needs ``pip install 'reidkit[pose]'``.
* :mod:`.estimate`: :func:`~.estimate.estimate_file`, which estimates the images a keypoint file lacks.

:data:`ESTIMATORS` names the estimators of ``reidkit keypoints --estimator``.
"""

from __future__ import annotations

from collections.abc import Callable

from reidkit.data.keypoints import KeypointSource


def _mediapipe() -> KeypointSource:
    from reidkit.pose.mediapipe_pose import MediaPipePose

    return MediaPipePose()


#: estimator name -> a function that makes it (an estimator's dependencies are imported only then)
ESTIMATORS: dict[str, Callable[[], KeypointSource]] = {"mediapipe": _mediapipe}


def make_estimator(name: str) -> KeypointSource:
    """The estimator called ``name`` (one of :data:`ESTIMATORS`).

    Raises:
        ConfigError: an unknown name.
    """
    from reidkit.errors import ConfigError

    if name not in ESTIMATORS:
        raise ConfigError(f"estimator: expected one of {', '.join(sorted(ESTIMATORS))}, got {name!r}")
    return ESTIMATORS[name]()
