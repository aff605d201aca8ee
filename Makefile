# Two entry points: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned to the releases these machines serve from local disk.
TORCH := torch==2.14.1 torchvision==0.29.1
EXTRAS := dev,faiss,onnx,openvino,serve,video,mat,mobilenet

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
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
