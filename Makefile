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

# The demo's training flags: 8 short videos need a higher learning rate and a small first conv block.
DEMO_CACHE ?= zarr
DEMO_OUT   ?= runs/demo
DEMO_TRAIN ?= --width 16 --lr 0.05 --finetune-lr 0.01 --milestones 20,25 --epochs 30 --batch-size 4 --folds 3 --patience 10 --num-workers 0

# Everything on the demo: data, features (random ResNet50: no weights are downloaded), the streams ablation
# (spatial and temporal single-stream models, then the two-stream model initialised from them), the table,
# and a prediction on a held-out video with the two-stream model.
demo: demo-data
	$(VPY) cli.py features --dataset demo --root $(DEMO) --cache $(DEMO_CACHE) --weights random --no-progress
	$(VPY) cli.py ablate --cache $(DEMO_CACHE) --dataset demo --grid "streams=spatial,temporal,both" --fold-ids 0 \
		--out $(DEMO_OUT) $(DEMO_TRAIN)
	$(VPY) cli.py predict "$$(ls $(DEMO)/videos/test/* | head -n 1)" --checkpoint "$(DEMO_OUT)/streams=both/fold0/best.pt" \
		--out $(DEMO_OUT)/predict --no-progress
	@echo; echo "== demo scores (held-out test videos; mean CCC across folds):"; cat $(DEMO_OUT)/ablation.md

# Any dataset of data_manifest.yaml: make features DATASET=affwild CACHE=/scratch/zarr ARGS="--workers 8"
features: setup
	$(VPY) cli.py features --dataset $(DATASET) --cache $(CACHE) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

# Two pytest processes, each taking whole files (a module's fixtures are built once; tests/conftest.py puts the
# longest first): one process kept about 0.9 of the 2 cores busy on average (workers and batch jobs starting, jobs
# expiring) and took 26.5 min; two keep 1.6 busy and take 14 min.
TEST_PROCS ?= 2
test: setup
	$(VPY) -m pytest -q -n $(TEST_PROCS) --dist loadfile --durations=20 tests

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

train: setup
	$(VPY) cli.py train --cache $(CACHE) --dataset $(DATASET) --out $(OUT) $(if $(filter demo,$(DATASET)),$(DEMO_TRAIN)) $(ARGS)

ablate: setup
	$(VPY) cli.py ablate --cache $(CACHE) --dataset $(DATASET) --grid "window=4,8,12,16" --out $(OUT)/ablation \
		$(if $(filter demo,$(DATASET)),$(DEMO_TRAIN) --fold-ids 0) $(ARGS)

lint: setup
	$(VPY) -m ruff check .

# The FER+ ResNet50 (VGGFace2 then FER+, S. Albanie). Downloaded only here, never at run time.
weights:
	mkdir -p weights
	test -f weights/resnet50_ferplus_dag.pth || curl -fL -o weights/resnet50_ferplus_dag.pth "$(FERPLUS_URL)"
	sha256sum weights/resnet50_ferplus_dag.pth | tee weights/resnet50_ferplus_dag.pth.sha256

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
