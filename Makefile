# The two commands that matter: `make run` (the whole product on this machine)
# and `make test` (the whole suite). Both depend on `make setup`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: setup run test lint typecheck pytest dev-certs

FACE_MESH_FILES := var/models/face-mesh/face_landmark.tflite var/models/face-mesh/iris_landmark.tflite

setup: $(STAMP) var/models/tiny-sd/model_index.json dev-certs $(FACE_MESH_FILES)

# Installs the pinned dependencies only (the project runs from this folder); the
# stamp carries pyproject's hash, so a second run with nothing changed is instant.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

# The product's default base model (LIKENESS_BASE_MODEL=var/models/tiny-sd): a tiny random-weight
# Stable Diffusion written by our own CLI, so a fresh checkout runs offline with no model download.
var/models/tiny-sd/model_index.json: personalization/tiny.py | $(STAMP)
	$(PY) -m personalization build-tiny-model var/models/tiny-sd --force

# The self-signed development chain that signs C2PA manifests (docs/provenance.md); kept while
# usable, remade near expiry. Production configures its own (LIKENESS_C2PA_CERT_CHAIN, docs/operations.md).
dev-certs: | $(STAMP)
	$(PY) -m editing.provenance.certificates ensure-dev var/certs

# MediaPipe's face mesh and iris models (Apache-2.0, for captions and face masks): taken out of the
# mediapipe wheel on the package index and checked against the sha256s pinned in facemesh.py, again
# whenever that file changes; nothing is downloaded when verified files are there
# (docs/personalization.md, "Face models and their licences"). LIKENESS_FACE_MESH_DIR points elsewhere.
$(FACE_MESH_FILES) &: personalization/facemesh.py | $(STAMP)
	$(PY) -m personalization fetch-face-mesh --dir var/models/face-mesh
	touch $(FACE_MESH_FILES)

# Development defaults; any of them can be overridden from the environment.
run: export DJANGO_DEBUG ?= 1
run: setup
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py seed_demo
	$(PY) -m config.stack

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The django-stubs plugin imports the settings; type checking needs no secret key.
typecheck: setup
	DJANGO_DEBUG=1 $(VENV)/bin/mypy .

# Against DATABASE_URL / REDIS_URL from the environment (PostgreSQL and Redis in CI);
# SQLite when DATABASE_URL is unset, where PostgreSQL-only tests skip with a reason.
# TEST_PROCESSES pytest processes (pytest-xdist), one per core of the 2-core dev/CI machine; each has a
# test database and a Redis database of its own (tests/conftest.py), and a file's tests stay together
# so its module fixtures are built once.
TEST_PROCESSES ?= 2
pytest: setup
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

test: lint typecheck pytest
