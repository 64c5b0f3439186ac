"""
Tests for L{containerflare.RuntimeConfig}: the environment matrix.
"""

from __future__ import annotations

import pytest

from containerflare import ConfigError, RuntimeConfig


@pytest.mark.parametrize(
    ("environ", "platform", "endpoint"),
    [
        ({}, "generic", "tcp:port=8787:interface=0.0.0.0"),
        ({"PORT": "9000"}, "generic", "tcp:port=9000:interface=0.0.0.0"),
        ({"K_SERVICE": "svc"}, "cloud_run", "tcp:port=8080:interface=0.0.0.0"),
        ({"K_SERVICE": "svc", "PORT": "8081"}, "cloud_run", "tcp:port=8081:interface=0.0.0.0"),
        ({"K_REVISION": "svc-0001"}, "cloud_run", "tcp:port=8080:interface=0.0.0.0"),
        ({"K_CONFIGURATION": "svc"}, "cloud_run", "tcp:port=8080:interface=0.0.0.0"),
        ({"CLOUD_RUN_JOB": "job"}, "cloud_run", "tcp:port=8080:interface=0.0.0.0"),
        ({"CLOUDFLARE_APPLICATION_ID": "a"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
        ({"CLOUDFLARE_DURABLE_OBJECT_ID": "d"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
        ({"CLOUDFLARE_LOCATION": "lhr"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
        ({"CONTAINERFLARE_WORKER": "w"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
        ({"CF_CONTAINER_PORT": "9999"}, "cloudflare", "tcp:port=9999:interface=0.0.0.0"),
        ({"CF_CMD_ENDPOINT": "stdio"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
        (
            {"CF_CONTAINER_ADDR": "127.0.0.1", "CF_CONTAINER_PORT": "1234"},
            "cloudflare",
            "tcp:port=1234:interface=127.0.0.1",
        ),
        ({"CF_CONTAINER_ADDR": "::"}, "cloudflare", "tcp6:port=8787:interface=\\:\\:"),
        ({"CF_CONTAINER_ADDR": "[::1]"}, "cloudflare", "tcp6:port=8787:interface=\\:\\:1"),
        # PORT wins over CF_CONTAINER_PORT.
        ({"PORT": "1", "CF_CONTAINER_PORT": "2"}, "cloudflare", "tcp:port=1:interface=0.0.0.0"),
        # The platform's own variables win over reference conventions.
        ({"K_SERVICE": "svc", "CF_CMD_ENDPOINT": "stdio"}, "cloud_run", "tcp:port=8080:interface=0.0.0.0"),
        ({"CLOUDFLARE_APPLICATION_ID": "a", "K_SERVICE": "svc"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
        # PORT alone is not Cloud Run.
        ({"PORT": "8080"}, "generic", "tcp:port=8080:interface=0.0.0.0"),
        # Empty values count as unset.
        ({"PORT": "", "K_SERVICE": ""}, "generic", "tcp:port=8787:interface=0.0.0.0"),
        # Forcing the platform.
        ({"CONTAINERFLARE_PLATFORM": "cloud_run"}, "cloud_run", "tcp:port=8080:interface=0.0.0.0"),
        ({"CONTAINERFLARE_PLATFORM": "generic", "K_SERVICE": "s"}, "generic", "tcp:port=8787:interface=0.0.0.0"),
        ({"CONTAINERFLARE_PLATFORM": "Cloudflare"}, "cloudflare", "tcp:port=8787:interface=0.0.0.0"),
    ],
)
def test_matrix(environ: dict[str, str], platform: str, endpoint: str) -> None:
    config = RuntimeConfig.from_environ(environ)
    assert config.platform.name == platform
    assert config.provider.name == platform
    assert config.endpoint == endpoint


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"PORT": "65536"}, "PORT"),
        ({"PORT": "-1"}, "PORT"),
        ({"CF_CONTAINER_PORT": "80a"}, "CF_CONTAINER_PORT"),
        ({"CF_CONTAINER_ADDR": "localhost"}, "CF_CONTAINER_ADDR"),
        ({"CF_CONTAINER_ADDR": "300.1.1.1"}, "CF_CONTAINER_ADDR"),
        ({"CONTAINERFLARE_PLATFORM": "aws"}, "CONTAINERFLARE_PLATFORM"),
        ({"CONTAINERFLARE_LOG_LEVEL": "loud"}, "CONTAINERFLARE_LOG_LEVEL"),
        ({"CONTAINERFLARE_LOG_FORMAT": "xml"}, "CONTAINERFLARE_LOG_FORMAT"),
        ({"CONTAINERFLARE_TRUSTED_HOPS": "many"}, "CONTAINERFLARE_TRUSTED_HOPS"),
    ],
)
def test_invalid_values_name_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_environ(environ)
    value = next(iter(environ.values()))
    assert info.value.variable == variable
    assert info.value.value == value
    assert variable in str(info.value) and repr(value) in str(info.value)


def test_platform_values_carry_what_the_environment_says() -> None:
    config = RuntimeConfig.from_environ(
        {
            "CONTAINERFLARE_WORKER": "my-worker",
            "CLOUDFLARE_APPLICATION_ID": "app-1",
            "CLOUDFLARE_DURABLE_OBJECT_ID": "do-1",
            "CLOUDFLARE_LOCATION": "sfo06",
            "CLOUDFLARE_REGION": "WNAM",
            "CLOUDFLARE_COUNTRY_A2": "US",
        }
    )
    p = config.platform
    assert (p.worker_name, p.application_id, p.durable_object_id) == ("my-worker", "app-1", "do-1")
    assert (p.location, p.region, p.country) == ("sfo06", "WNAM", "US")

    run = RuntimeConfig.from_environ(
        {
            "K_SERVICE": "svc",
            "K_REVISION": "svc-00001-abc",
            "K_CONFIGURATION": "svc",
            "GCLOUD_PROJECT": "proj",
            "REGION": "europe-west1",
        }
    ).platform
    assert (run.service, run.revision, run.configuration) == ("svc", "svc-00001-abc", "svc")
    assert (run.project_id, run.region) == ("proj", "europe-west1")

    job = RuntimeConfig.from_environ(
        {
            "CLOUD_RUN_JOB": "nightly",
            "CLOUD_RUN_EXECUTION": "nightly-abc",
            "CLOUD_RUN_TASK_INDEX": "3",
            "CLOUD_RUN_TASK_COUNT": "10",
            "CLOUD_RUN_TASK_ATTEMPT": "junk",
            "GOOGLE_CLOUD_PROJECT": "p2",
            "GCLOUD_PROJECT": "ignored",
        }
    ).platform
    assert (job.job, job.execution, job.task_index, job.task_count) == ("nightly", "nightly-abc", 3, 10)
    assert job.task_attempt is None
    assert job.project_id == "p2"


def test_dotenv_overrides_environ(tmp_path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PORT=7000\nK_SERVICE=from-dotenv\n")
    environ = {"PORT": "6000"}
    config = RuntimeConfig.from_environ(environ, dotenv_path=dotenv)
    assert config.listen_port == 7000
    assert config.platform.name == "cloud_run"
    assert config.environ["K_SERVICE"] == "from-dotenv"
    # The caller's mapping is left alone.
    assert environ == {"PORT": "6000"}
    # A missing file is no error.
    assert RuntimeConfig.from_environ(environ, dotenv_path=tmp_path / "nope").listen_port == 6000


def test_config_is_immutable() -> None:
    config = RuntimeConfig.from_environ({"PORT": "1000"})
    with pytest.raises(AttributeError):
        config.listen_port = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.environ["PORT"] = "2"  # type: ignore[index]


def test_defaults() -> None:
    config = RuntimeConfig.from_environ({})
    assert config.log_format == "text"
    assert config.log_level == "info"
    assert config.trusted_hops == 1
    assert config.command_endpoint is None
    assert config.metadata_secret is None
    assert RuntimeConfig.from_environ({"K_SERVICE": "s"}).log_format == "json"
    assert RuntimeConfig.from_environ({"CONTAINERFLARE_LOG_LEVEL": "WARNING"}).log_level == "warn"
    assert "secret" not in repr(RuntimeConfig.from_environ({"CONTAINERFLARE_METADATA_SECRET": "secret"}))
