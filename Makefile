# mimamo: `make demo` and `make test` do all set-up on a fresh machine.
PY       ?= python3
VENV     ?= .venv
VPY      := $(VENV)/bin/python
DATASET  ?= demo
CACHE    ?= zarr
OUT      ?= runs/$(DATASET)
DEMO     ?= data/demo
WEIGHTS  ?=
WORKERS  ?=
ARGS     ?=
TORCH    ?= torch==2.13.0
FERPLUS_URL ?= http://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/resnet50_ferplus_dag.pth

.PHONY: setup demo demo-data features train ablate test bench lint clean weights info

# The stamp depends on setup.cfg, so `make setup` is a no-op until the dependencies change.
# torch goes in first and pinned, so no later range can pull a multi-GB CUDA build.
setup: $(VENV)/.stamp
$(VENV)/.stamp: setup.cfg pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH)"
	$(VPY) -m pip install -q -e ".[dev,cluster,plots]"
	touch $@

info: setup
	$(VPY) cli.py info

demo-data: setup
	$(VPY) cli.py demo-data --out $(DEMO)

demo: demo-data
	@echo "demo: built the demo dataset in $(DEMO) (the later stages are added to this target as they land)"

# Any dataset of data_manifest.yaml: make features DATASET=affwild CACHE=/scratch/zarr ARGS="--workers 8"
features: setup
	$(VPY) cli.py features --dataset $(DATASET) --cache $(CACHE) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

test: setup
	$(VPY) -m pytest -q tests

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

lint: setup
	$(VPY) -m ruff check .

# The FER+ ResNet50 (VGGFace2 then FER+, S. Albanie). Downloaded only here, never at run time.
weights:
	mkdir -p weights
	test -f weights/resnet50_ferplus_dag.pth || curl -fL -o weights/resnet50_ferplus_dag.pth "$(FERPLUS_URL)"
	sha256sum weights/resnet50_ferplus_dag.pth | tee weights/resnet50_ferplus_dag.pth.sha256

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
