"""
The example's deployment files: the Dockerfile (hadolint, and what it runs),
the deploy scripts (shellcheck, and their behaviour against stub docker,
gcloud and npx commands that record how they were called), the npm pins and
the wrangler configuration.  Docker itself is not available here, so no image
is built.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e._worker import EXAMPLE, node

VENV_BIN = Path(sys.executable).parent


def read_jsonc(path: Path) -> dict:
    out = subprocess.run(
        [node(), "-e", _JSONC, str(path)], check=True, capture_output=True, text=True, timeout=30
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


_JSONC = """
const text = require("fs").readFileSync(process.argv[1], "utf8");
let out = "";
for (let i = 0; i < text.length; i++) {
  const c = text[i];
  if (c === '"') { let j = i + 1; while (j < text.length && text[j] !== '"') j += text[j] === "\\\\" ? 2 : 1; out += text.slice(i, j + 1); i = j; }
  else if (c === "/" && text[i + 1] === "/") { while (i < text.length && text[i] !== "\\n") i++; out += "\\n"; }
  else if (c === "/" && text[i + 1] === "*") { i = text.indexOf("*/", i + 2) + 1; }
  else out += c;
}
process.stdout.write(JSON.stringify(JSON.parse(out.replace(/,(\\s*[}\\]])/g, "$1"))));
"""


# --- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--failure-threshold", "info", "--disable-ignore-pragma", "Dockerfile"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions() -> list[tuple[str, str]]:
    text = (EXAMPLE / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_runs_twistd_as_a_non_root_user() -> None:
    steps = instructions()
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert froms and all(re.match(r"python:3\.\d+-slim", f) for f in froms), froms
    final_stage = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [rest for keyword, rest in final_stage if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    cmd = [rest for keyword, rest in final_stage if keyword == "CMD"]
    assert json.loads(cmd[-1]) == ["twistd", "-n", "--pidfile=", "containerflare", "--app", "app:app"]
    assert ("EXPOSE", "8787") in final_stage
    # Dependencies are installed before the app's code is copied (layer cache).
    kinds = [(k, r) for k, r in steps]
    install = next(i for i, (k, r) in enumerate(kinds) if k == "RUN" and "pip install" in r)
    app_copy = next(i for i, (k, r) in enumerate(kinds) if k == "COPY" and "*.py" in r)
    assert install < app_copy


def test_dockerignore_keeps_the_worker_and_npm_packages_out() -> None:
    patterns = [
        line.strip()
        for line in (EXAMPLE / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("node_modules/", "worker/", ".wrangler/", ".env"):
        assert needed in patterns
    # What the Dockerfile copies is not ignored.
    assert "*.py" not in patterns and "requirements.txt" not in patterns and "wheels/" not in patterns
    assert (EXAMPLE / "wheels" / "README.md").is_file()  # COPY wheels/ always has a source


# --- deploy scripts -------------------------------------------------------------------

SCRIPTS = ("build_wheel.sh", "deploy_cloudflare.sh", "deploy_cloudrun.sh")


def test_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "-x", *SCRIPTS], cwd=EXAMPLE, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for script in SCRIPTS:
        assert os.access(EXAMPLE / script, os.X_OK), f"{script} is not executable"


STUB = """#!/usr/bin/env bash
# Records its name and arguments (and, for npx and python3, its standard input) as JSON lines.
name=$(basename "$0")
input=""
if [ "$name" = npx ] || [ "$name" = python3 ]; then input=$(cat 2>/dev/null || true); fi
"$STUB_PYTHON" -c 'import json, sys; print(json.dumps({"cmd": sys.argv[1], "args": sys.argv[2:]}))' "$name" "$@" >> "$STUB_LOG"
if [ -n "$input" ]; then "$STUB_PYTHON" -c 'import json, sys; print(json.dumps({"cmd": "stdin", "args": [sys.argv[1]]}))' "$input" >> "$STUB_LOG"; fi
if [ "$name" = gcloud ] && [ "$1" = config ] && [ "$2" = get-value ]; then
  case "$3" in
    project) if [ -n "${STUB_PROJECT:-}" ]; then echo "$STUB_PROJECT"; else echo "(unset)" >&2; fi ;;
    run/region) if [ -n "${STUB_REGION:-}" ]; then echo "$STUB_REGION"; else echo "(unset)" >&2; fi ;;
  esac
fi
if [ "$name" = gcloud ] && [ "$1" = artifacts ] && [ "$3" = describe ]; then exit 1; fi
exit 0
"""


def run_script(tmp_path: Path, script: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("docker", "gcloud", "npx", "npm", "python3", "git"):
        stub = bin_dir / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.write_text("")
    environ = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "STUB_PYTHON": sys.executable,
        **env,
    }
    result = subprocess.run(
        ["bash", str(EXAMPLE / script)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return result, calls


def commands(calls: list[dict], cmd: str) -> list[list[str]]:
    return [c["args"] for c in calls if c["cmd"] == cmd]


@pytest.mark.parametrize(
    "env, missing",
    [({}, "PROJECT_ID"), ({"STUB_PROJECT": "my-project"}, "REGION"), ({"REGION": "europe-west1"}, "PROJECT_ID")],
)
def test_cloudrun_needs_a_project_and_a_region(tmp_path: Path, env: dict[str, str], missing: str) -> None:
    result, calls = run_script(tmp_path, "deploy_cloudrun.sh", env)
    assert result.returncode != 0
    assert missing in result.stderr and "gcloud config set" in result.stderr
    assert not commands(calls, "docker")  # nothing built or pushed


@pytest.mark.parametrize(
    "allow, flag",
    [(None, "--no-allow-unauthenticated"), ("false", "--no-allow-unauthenticated"), ("true", "--allow-unauthenticated"), ("1", "--allow-unauthenticated")],
)
def test_cloudrun_deploy(tmp_path: Path, allow: str | None, flag: str) -> None:
    env = {"STUB_PROJECT": "my-project", "STUB_REGION": "europe-west1", "TAG": "v7", "LOG_LEVEL": "debug"}
    if allow is not None:
        env["ALLOW_UNAUTH"] = allow
    result, calls = run_script(tmp_path, "deploy_cloudrun.sh", env)
    assert result.returncode == 0, result.stderr
    image = "europe-west1-docker.pkg.dev/my-project/containerflare/containerflare-example:v7"
    docker = commands(calls, "docker")
    assert ["build", "--platform=linux/amd64", "--tag", image, "."] in docker
    assert ["push", image] in docker
    assert docker.index(["push", image]) > docker.index(["build", "--platform=linux/amd64", "--tag", image, "."])
    deploy = next(args for args in commands(calls, "gcloud") if args[:2] == ["run", "deploy"])
    assert deploy[2] == "containerflare-example"
    for option in (["--project", "my-project"], ["--region", "europe-west1"], ["--image", image], ["--port", "8080"]):
        i = deploy.index(option[0])
        assert deploy[i : i + 2] == option
    assert "CONTAINERFLARE_LOG_LEVEL=debug" in deploy
    assert flag in deploy
    assert ("--allow-unauthenticated" in deploy) != ("--no-allow-unauthenticated" in deploy)
    # The missing Artifact Registry repository is created.
    assert any(args[:3] == ["artifacts", "repositories", "create"] for args in commands(calls, "gcloud"))


def test_cloudrun_rejects_a_bad_log_level(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, "deploy_cloudrun.sh", {"PROJECT_ID": "p", "REGION": "r", "LOG_LEVEL": "loud"})
    assert result.returncode != 0 and "LOG_LEVEL" in result.stderr
    assert not commands(calls, "docker")


def test_cloudflare_deploy(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, "deploy_cloudflare.sh", {"CONTAINERFLARE_METADATA_SECRET": "s3cret"})
    assert result.returncode == 0, result.stderr
    npx = commands(calls, "npx")
    assert npx[0] == ["--no-install", "wrangler", "deploy"]
    assert npx[1] == ["--no-install", "wrangler", "secret", "put", "CONTAINERFLARE_METADATA_SECRET"]
    # The secret goes through standard input, never on a command line.
    assert ["s3cret"] in commands(calls, "stdin")
    assert all("s3cret" not in arg for c in calls if c["cmd"] != "stdin" for arg in c["args"])
    # Inside this repository, the image gets the checkout's containerflare wheel.
    wheel = commands(calls, "python3")
    assert wheel and wheel[0][:3] == ["-m", "pip", "wheel"] and str(EXAMPLE.parent.parent) in wheel[0]


def test_cloudflare_without_docker_says_so(tmp_path: Path) -> None:
    # A PATH with npm and the few tools the script needs, and no docker.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "npm").chmod(0o755)
    for tool in ("dirname",):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(EXAMPLE / "deploy_cloudflare.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "docker is required" in result.stderr, result.stderr


# --- npm pins and the wrangler configuration -----------------------------------------


def test_npm_packages_are_pinned_and_locked() -> None:
    package = json.loads((EXAMPLE / "package.json").read_text())
    lock = json.loads((EXAMPLE / "package-lock.json").read_text())
    declared = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    assert {"@cloudflare/containers", "miniflare", "esbuild", "wrangler"} <= set(declared)
    for name, version in declared.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert declared["@cloudflare/containers"].startswith("0.3.")
    assert declared["miniflare"].startswith("4.")
    # wrangler's own miniflare is the same one (installed once).
    assert lock["packages"]["node_modules/wrangler"]["dependencies"]["miniflare"] == declared["miniflare"]


def test_wrangler_config_matches_the_worker() -> None:
    config = read_jsonc(EXAMPLE / "wrangler.jsonc")
    assert config["main"] == "worker/index.js"
    (container,) = config["containers"]
    (binding,) = config["durable_objects"]["bindings"]
    assert container["class_name"] == binding["class_name"] == "AppContainer"
    assert binding["name"] == "APP_CONTAINER"
    assert container["image"] == "./Dockerfile"
    assert any("AppContainer" in m.get("new_sqlite_classes", []) for m in config["migrations"])
    # Every sample binding is in the allowlist, and nothing else.
    names = {b["binding"] for b in config["kv_namespaces"]}
    names |= {b["binding"] for b in config["d1_databases"]}
    names |= {b["binding"] for b in config["r2_buckets"]}
    names |= {p["binding"] for p in config["queues"]["producers"]}
    allowed = set(re.split(r"[\s,]+", config["vars"]["CONTAINERFLARE_ALLOWED_BINDINGS"].strip()))
    assert allowed == names == {"KV", "DB", "BUCKET", "QUEUE"}
    assert config["queues"]["consumers"][0]["queue"] == config["queues"]["producers"][0]["queue"]
    # The app's binding names are the same.
    app = (EXAMPLE / "app.py").read_text()
    for name in names:
        assert re.search(rf'^\w+ = "{name}"$', app, re.MULTILINE), name


def test_wrangler_accepts_the_config_and_builds_for_linux_amd64(tmp_path: Path) -> None:
    """
    The pinned wrangler's own check of wrangler.jsonc and of the Worker
    bundle (`wrangler deploy --dry-run`), with a stub Docker that records the
    image build wrangler would run.
    """
    docker_log = tmp_path / "docker.log"
    docker = tmp_path / "docker"
    # The stub reads its stdin to the end: wrangler pipes the Dockerfile to
    # `docker build`, and a stub that exits first makes that write fail (EPIPE).
    docker.write_text(f'#!/bin/sh\necho "$@" >> "{docker_log}"\ncat > /dev/null\nexit 0\n')
    docker.chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "WRANGLER_DOCKER_BIN": str(docker),
        "WRANGLER_SEND_METRICS": "false",
        "CI": "1",
    }
    env.pop("CLOUDFLARE_API_TOKEN", None)
    result = subprocess.run(
        [node(), str(EXAMPLE / "node_modules" / "wrangler" / "bin" / "wrangler.js"), "deploy", "--dry-run", "--outdir", str(tmp_path / "out")],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("env.APP_CONTAINER (AppContainer)", "env.KV ", "env.DB ", "env.BUCKET ", "env.QUEUE "):
        assert line in result.stdout, result.stdout
    builds = [line.split() for line in docker_log.read_text().splitlines() if line.startswith("build")]
    assert builds, docker_log.read_text()
    build = builds[0]
    assert build[build.index("--platform") + 1] == "linux/amd64"
    assert build[-1] == str(EXAMPLE)
