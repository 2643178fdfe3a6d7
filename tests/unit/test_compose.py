"""The dockerised test PBX (docker-compose.yml, docker/), checked without a Docker engine
(none runs on the development machines): the file parses, everything it and the image
recipes name exists in the repository, the images install the native harness's package
lists, the PBX's configuration is rendered before Asterisk starts and the migrations run
before the service, every port stays on 127.0.0.1, only the test secrets are used, and the
SIPp flows are the native harness's scenarios."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml

from ivr.settings import TEST_SECRETS, Settings, get_settings
from testpbx import root as native_root
from testpbx.paths import REPO
from testpbx.sipp import SCENARIOS, Sipp

COMPOSE = REPO / "docker-compose.yml"
HOST_PACKAGES = REPO / "testpbx" / "packages" / "host.txt"
IMAGE_PACKAGES = REPO / "docker" / "image-packages.sh"
FLOWS = ("sales", "service-1-info", "service-1-rfc4733", "service-2", "silence", "callbacks",
         "load")


# parsing ----------------------------------------------------------------------------------
@dataclass
class Stage:
    """One ``FROM ... AS name`` stage of a Dockerfile and its instructions."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    path: Path
    stages: dict[str, Stage]

    def chain(self, target: str | None) -> list[Stage]:
        """The stages an image of ``target`` (None: the last stage) is built from."""
        name = target or list(self.stages)[-1]
        chain: list[Stage] = []
        while name in self.stages:
            chain.insert(0, self.stages[name])
            name = self.stages[name].base
        return chain

    def last(self, target: str | None, keyword: str) -> str | None:
        found = [args for stage in self.chain(target) for args in stage.all(keyword)]
        return found[-1] if found else None


def parse_dockerfile(path: Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(base=words[0])
            continue
        assert current is not None, f"{path}: {keyword} before FROM"
        current.instructions.append((keyword, re.sub(r"\s+", " ", args).strip()))
    return Dockerfile(path, stages)


def exec_form(args: str) -> list[str]:
    """A CMD/ENTRYPOINT as the argv it runs (exec form: a JSON list)."""
    parsed = yaml.safe_load(args)
    assert isinstance(parsed, list), f"use the exec form (a JSON list): {args}"
    return [str(a) for a in parsed]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore's ``patterns`` leave ``path`` out of the build context (the
    last matching pattern wins; a pattern that matches a directory covers what is in it)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            depth = pattern.count("/") + 1
            hit = any(c.count("/") + 1 == depth and fnmatchcase(c, pattern) for c in candidates)
        if hit:
            result = not negate
    return result


def dockerignore(dockerfile: Path) -> list[str]:
    own = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert own.is_file(), (f"{own.relative_to(REPO)} missing: without it the whole "
                           "repository (.venv, var/) goes into the build context")
    return [line.strip() for line in own.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def packages_of(list_file: Path, target: str | None = None) -> list[str]:
    """A package list's names: one a line (the Asterisk root's), or with ``target``, the
    host list's packages whose third column on names that image target."""
    names = []
    for line in list_file.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if target is None and words:
            names.extend(words)
        elif target is not None and target in words[2:]:
            names.append(words[1])
    return names


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def bind(self) -> bool:
        return self.source.startswith((".", "/"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    found = []
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"short syntax only: {volume}"
        source, target, *options = volume.split(":")
        found.append(Mount(source, target, "ro" in options))
    return found


def env_file(service: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    files = service.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        for line in (REPO / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, sep, value = line.partition("=")
                assert sep, f"{name}: not NAME=VALUE: {line}"
                values[key.strip()] = value.strip()
    return values


def load_module(path: Path) -> ModuleType:
    name = f"docker_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(parsed, dict)
    return parsed


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def built(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any],
                                                                  Dockerfile]]:
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            path = REPO / build["context"] / build.get("dockerfile", "Dockerfile")
            yield name, service, parse_dockerfile(path)


def command_of(service: dict[str, Any], dockerfile: Dockerfile) -> list[str]:
    """What the container runs: compose's entrypoint/command over the image's."""
    target = service["build"].get("target")
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        image_entrypoint = dockerfile.last(target, "ENTRYPOINT")
        entrypoint = exec_form(image_entrypoint) if image_entrypoint else []
    command = service.get("command")
    if command is None:
        image_command = dockerfile.last(target, "CMD")
        command = exec_form(image_command) if image_command else []
    return [*entrypoint, *command]


# the file and what it names ---------------------------------------------------------------
def test_the_stack_has_every_part_of_the_native_harness(
        services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "pbx-config", "asterisk", "service", "sipp",
                             "sipp-load"}
    assert services["sipp"]["profiles"] == ["calls"]
    assert services["sipp-load"]["profiles"] == ["load"]
    started_by_up = [n for n, s in services.items() if "profiles" not in s]
    assert sorted(started_by_up) == ["asterisk", "pbx-config", "postgres", "service"]


def test_every_build_context_dockerfile_and_target_exists(
        services: dict[str, dict[str, Any]]) -> None:
    for name, service, dockerfile in built(services):
        assert (REPO / service["build"]["context"]).resolve() == REPO, name
        assert dockerfile.path.is_file(), f"{name}: {dockerfile.path} missing"
        target = service["build"].get("target")
        assert target is None or target in dockerfile.stages, f"{name}: no stage {target}"


def test_every_copy_source_exists_and_is_in_the_build_context(
        services: dict[str, dict[str, Any]]) -> None:
    seen = set()
    for _, _, dockerfile in built(services):
        if dockerfile.path in seen:
            continue
        seen.add(dockerfile.path)
        patterns = dockerignore(dockerfile.path)
        for stage in dockerfile.stages.values():
            for args in stage.all("COPY"):
                words = [w for w in args.split() if not w.startswith("--")]
                for source in words[:-1]:
                    assert (REPO / source).exists(), f"{dockerfile.path.name}: COPY {source}"
                    assert not ignored(source, patterns), (
                        f"{dockerfile.path.name}: COPY {source}, but its .dockerignore "
                        "leaves it out of the build context")


def from_repository(service: dict[str, Any], chain: list[Stage]) -> dict[PurePosixPath, str]:
    """Where a container finds the repository's files: COPY destinations (the image) and
    bind mounts (compose), each with the repository path it holds."""
    found: dict[PurePosixPath, str] = {}
    workdir = PurePosixPath("/")
    for stage in chain:
        for keyword, args in stage.instructions:
            if keyword == "WORKDIR":
                workdir = workdir / args
            elif keyword == "COPY":
                *sources, dest = [w for w in args.split() if not w.startswith("--")]
                into = workdir / dest
                for source in sources:
                    as_dir = dest.endswith("/") or len(sources) > 1
                    found[into / PurePosixPath(source).name if as_dir else into] = source
    for mount in mounts(service):
        if mount.bind:
            found[PurePosixPath(mount.target)] = mount.source.removeprefix("./")
    return found


def test_what_the_images_run_is_in_the_image(services: dict[str, dict[str, Any]]) -> None:
    """Every script or list a container's command or an image's RUN names is a file of the
    repository the image copied or compose mounted; pip's packages were copied before it."""
    for name, service, dockerfile in built(services):
        chain = dockerfile.chain(service["build"].get("target"))
        workdir = PurePosixPath("/", *[a for s in chain for a in s.all("WORKDIR")])
        inside = from_repository(service, chain)
        words = [*command_of(service, dockerfile),
                 *shlex.split(" ".join(a for s in chain for a in s.all("RUN")))]
        for word in words:
            if not re.fullmatch(r"[\w./-]+\.(py|sh|txt)", word):
                continue
            path = workdir / word
            holder = next((p for p in inside if p == path or p in path.parents), None)
            assert holder is not None, f"{name}: {path} is neither copied nor mounted"
            source = REPO / inside[holder] / path.relative_to(holder)
            assert source.is_file(), f"{name}: {path} would be {source}, which is missing"
        runs = [a for s in chain for a in s.all("RUN")]
        if any("pip install" in a and "-e ." in a for a in runs):
            find = re.search(r"include\s*=\s*\[([^\]]*)\]",
                             (REPO / "pyproject.toml").read_text())
            assert find is not None
            for package in re.findall(r'"(\w+)\*"', find.group(1)):
                assert workdir / package in inside, f"{name}: pip needs {package}/ copied"


def test_every_bind_mount_env_file_and_named_volume_exists(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for mount in mounts(service):
            if mount.bind:
                assert (REPO / mount.source).exists(), f"{name}: {mount.source} missing"
                assert mount.read_only, f"{name}: the repository is mounted read-only"
            else:
                assert mount.source in declared, f"{name}: volume {mount.source} undeclared"
                used.add(mount.source)
        files = service.get("env_file", [])
        for env in [files] if isinstance(files, str) else files:
            assert (REPO / env).is_file(), f"{name}: env file {env} missing"
    assert used == declared, f"declared but unused: {declared - used}"


def test_the_repository_files_are_mounted_where_the_native_code_looks_for_them(
        services: dict[str, dict[str, Any]]) -> None:
    """One source of truth: asterisk-conf/, prompts/ and sipp/ come from the repository, at
    the place the editable install's code finds them (beside ivr/ and testpbx/)."""
    wanted = {"pbx-config": {"asterisk-conf", "prompts"}, "sipp": {"sipp"},
              "sipp-load": {"sipp"}}
    for name, directories in wanted.items():
        binds = {m.source.removeprefix("./"): m.target for m in mounts(services[name])
                 if m.bind}
        for directory in directories:
            assert binds.get(directory) == f"/opt/ivr/{directory}", (name, directory)
    assert SCENARIOS == REPO / "sipp"
    assert not list((REPO / "docker").rglob("*.conf")), "Asterisk configuration in docker/"
    assert not list((REPO / "docker").rglob("*.xml")), "SIPp scenarios copied into docker/"


# order of start ---------------------------------------------------------------------------
def test_asterisk_starts_only_after_its_configuration_is_rendered(
        services: dict[str, dict[str, Any]]) -> None:
    assert services["asterisk"]["depends_on"] == {
        "pbx-config": {"condition": "service_completed_successfully"}}
    service_needs = services["service"]["depends_on"]
    assert service_needs["postgres"] == {"condition": "service_healthy"}
    assert service_needs["asterisk"] == {"condition": "service_healthy"}
    for name in ("sipp", "sipp-load"):
        assert services[name]["depends_on"] == {"service": {"condition": "service_healthy"}}
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}"
    assert services["service"]["healthcheck"]["test"][-1].count("http://127.0.0.1:8080/healthz")


def test_the_service_runs_the_migrations_before_serving(
        services: dict[str, dict[str, Any]]) -> None:
    _name, service, dockerfile = next(b for b in built(services) if b[0] == "service")
    argv = command_of(service, dockerfile)
    assert argv[:2] == ["sh", "-c"], argv
    steps = [s.strip() for s in argv[2].split("&&")]
    assert "ivr db upgrade" in steps and "exec ivr serve" in steps, steps
    assert steps.index("ivr db upgrade") < steps.index("exec ivr serve")
    assert "umask 027" in steps  # as deploy/ivr.service: recordings never readable by others


# packages ---------------------------------------------------------------------------------
def test_the_asterisk_image_installs_exactly_the_native_roots_packages(
        services: dict[str, dict[str, Any]]) -> None:
    dockerfile = parse_dockerfile(REPO / services["asterisk"]["build"]["dockerfile"])
    [stage] = dockerfile.stages.values()
    assert stage.base == "debian:sid" and native_root.SUITE == "sid"
    listed = native_root.PACKAGE_LIST.relative_to(REPO)
    [copy] = [c for c in stage.all("COPY") if c.split()[0] == str(listed)]
    inside = copy.split()[-1]
    installs = [part.strip() for run in stage.all("RUN") for part in run.split("&&")
                if "apt-get install" in part]
    assert len(installs) == 1, installs
    assert "--no-install-recommends" in installs[0]  # as debootstrap's minbase root
    # Run the recipe's own selection with echo in place of apt-get.
    selection = installs[0].replace(inside, str(native_root.PACKAGE_LIST))
    selection = re.sub(r"apt-get install( -\S+)*", "echo", selection)
    done = subprocess.run(["sh", "-c", selection], capture_output=True, text=True, check=True)
    assert done.stdout.split() == list(native_root.PACKAGES)
    assert tuple(packages_of(native_root.PACKAGE_LIST)) == native_root.PACKAGES
    assert (
        f"debootstrap minbase sid {' '.join(native_root.PACKAGES)} v1") == native_root.RECIPE


def test_the_asterisk_image_has_the_directories_asterisk_conf_names(
        services: dict[str, dict[str, Any]]) -> None:
    """Asterisk writes to these: the native harness makes them in its root; the image makes
    them (no systemd in a container creates /var/run/asterisk); /etc/asterisk is the
    rendered configuration."""
    dockerfile = parse_dockerfile(REPO / services["asterisk"]["build"]["dockerfile"])
    runs = " ".join(dockerfile.stages["0"].all("RUN"))
    made = {w for part in runs.split("&&") if part.strip().startswith("install -d")
            for w in part.split()[2:] if w.startswith("/")}
    core = (REPO / "asterisk-conf" / "asterisk.conf").read_text()
    directories = dict(re.findall(r"^(ast\w+dir) => (\S+)$", core, re.MULTILINE))
    for key in ("astcachedir", "astvarlibdir", "astdbdir", "astkeydir", "astspooldir",
                "astrundir", "astlogdir"):
        assert directories[key] in made, f"the image does not make {key} {directories[key]}"
    assert directories["astetcdir"] == "/etc/asterisk" and "ln -s" in runs
    assert "/var/spool/asterisk/ivr-recordings" in made


def test_each_ivr_image_installs_its_packages_from_the_hosts_list(
        services: dict[str, dict[str, Any]]) -> None:
    dockerfile = parse_dockerfile(REPO / "docker" / "ivr.Dockerfile")
    targets = {t for line in HOST_PACKAGES.read_text().splitlines()
               for t in line.split("#", 1)[0].split()[2:]}
    assert targets == {"service", "sipp"} <= set(dockerfile.stages)
    for target in sorted(targets):
        runs = dockerfile.stages[target].all("RUN")
        assert any(f"sh docker/image-packages.sh {HOST_PACKAGES.relative_to(REPO)} {target}"
                   in run and "apt-get install -y --no-install-recommends $packages" in run
                   for run in runs), f"{target}: not installed from the host's list"
        done = subprocess.run(["sh", str(IMAGE_PACKAGES), str(HOST_PACKAGES), target],
                              capture_output=True, text=True, check=True)
        assert done.stdout.split() == packages_of(HOST_PACKAGES, target)
    assert packages_of(HOST_PACKAGES, "sipp") == ["sip-tester"]
    assert set(packages_of(HOST_PACKAGES, "service")) == {"espeak-ng", "sox"}
    assert dockerfile.stages["python"].base == "debian:bookworm"  # as the native host
    wrong = subprocess.run(["sh", str(IMAGE_PACKAGES), str(HOST_PACKAGES), "servce"],
                           capture_output=True, text=True)
    assert wrong.returncode == 1 and "no package for the image target servce" in wrong.stderr
    script = (REPO / "scripts" / "install-system-deps.sh").read_text()
    assert "testpbx/packages/host.txt" in script


# network and secrets ----------------------------------------------------------------------
def test_every_port_stays_on_127_0_0_1(services: dict[str, dict[str, Any]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in services.items():
        assert "ports" not in service and "expose" not in service, name
        assert service["network_mode"] in ("host", "none"), name
    assert "listen_addresses=127.0.0.1" in services["postgres"]["command"]
    settings = container_settings(services["service"], monkeypatch)
    for address in (settings.pbx.bind_address, settings.fastagi.bind_address,
                    settings.web.bind_address):
        assert str(address) == "127.0.0.1"
    assert settings.ari.url.startswith("http://127.0.0.1:") and settings.ami.host == "127.0.0.1"


def container_settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container of ``service`` reads: its env file and environment."""
    for key, value in {**env_file(service), **service.get("environment", {})}.items():
        monkeypatch.setenv(key, str(value))
    return get_settings()


def test_only_the_test_secrets_and_the_service_refuses_them_outside_test_mode(
        services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    database = services["postgres"]["environment"]
    assert database["POSTGRES_PASSWORD"] in TEST_SECRETS
    for name in ("pbx-config", "service", "sipp", "sipp-load"):
        assert env_file(services[name]) == {"IVR_MODE": "test", "IVR_NODE": "docker"}, name
        settings = container_settings(services[name], monkeypatch)
        url = settings.database.url.get_secret_value()
        assert url == (f"postgresql+psycopg://{database['POSTGRES_USER']}:"
                       f"{database['POSTGRES_PASSWORD']}@127.0.0.1:5432/"
                       f"{database['POSTGRES_DB']}")
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"(?i)password|secret|key", key):
                assert value in TEST_SECRETS, f"{name}: {key} is not a test secret"
    monkeypatch.setenv("IVR_MODE", "production")
    with pytest.raises(ValueError, match="production mode refuses the test PBX's default"):
        get_settings()


# volumes shared between the containers ----------------------------------------------------
def volume_at(service: dict[str, Any], target: str) -> str:
    [source] = [m.source for m in mounts(service) if m.target == target]
    return source


def test_the_containers_share_configuration_prompts_and_recordings_where_each_looks(
        services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = container_settings(services["service"], monkeypatch)
    pbx_root = services["pbx-config"]["environment"]["IVR_PBX_ROOT"]
    recordings, prompts = str(settings.recordings.asterisk_dir), str(settings.prompts.local_dir)
    assert settings.recordings.local_dir == settings.recordings.asterisk_dir
    rendered = volume_at(services["pbx-config"], f"{pbx_root}/etc")
    asterisk_image = parse_dockerfile(REPO / "docker" / "asterisk.Dockerfile")
    link = re.search(r"ln -s (\S+) /etc/asterisk", " ".join(
        asterisk_image.stages["0"].all("RUN")))
    assert link is not None and link.group(1) == f"{pbx_root}/etc/asterisk"
    assert volume_at(services["asterisk"], f"{pbx_root}/etc") == rendered
    assert volume_at(services["pbx-config"], f"{pbx_root}{recordings}") == \
        volume_at(services["asterisk"], recordings) == \
        volume_at(services["service"], str(settings.recordings.local_dir))
    assert prompts == f"/usr/share/asterisk/sounds/{settings.prompts.sound_prefix}"
    assert volume_at(services["pbx-config"], prompts) == volume_at(
        services["asterisk"], prompts) == volume_at(services["service"], prompts) == \
        volume_at(services["sipp"], prompts)


def test_the_pbx_config_one_shot_renders_what_the_native_harness_renders(
        services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """docker/render_pbx.py run here, with the containers' settings: Asterisk's files, the
    recordings directory and the prompts with their manifest."""
    argv = services["pbx-config"]["command"]
    assert argv[:2] == ["python", "docker/render_pbx.py"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env |= env_file(services["pbx-config"])
    env |= {"IVR_PBX_ROOT": str(tmp_path / "root"),
            "IVR_PROMPTS__LOCAL_DIR": str(tmp_path / "prompts")}
    done = subprocess.run([sys.executable, str(REPO / argv[1])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    etc = tmp_path / "root" / "etc" / "asterisk"
    assert "bindaddr = 127.0.0.1" in (etc / "http.conf").read_text()
    assert "bind = 127.0.0.1:5060" in (etc / "pjsip.conf").read_text()
    assert "contact = sip:agent1@127.0.0.1:5071" in (etc / "pjsip_site.conf").read_text()
    assert "Stasis(ivr)" in (etc / "extensions_numbers.conf").read_text()
    spool = tmp_path / "root" / "var" / "spool" / "asterisk" / "ivr-recordings"
    assert spool.is_dir() and spool.stat().st_mode & 0o777 == 0o750
    manifest = (tmp_path / "prompts" / "manifest.json").read_text()
    assert all(f'"{s}.wav"' in manifest for s in ("sales-notice", "service-question"))
    again = subprocess.run([sys.executable, str(REPO / argv[1])], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # a second `docker compose up` renders anew


# SIPp -------------------------------------------------------------------------------------
def test_the_sipp_flows_are_the_native_scenarios(
        services: dict[str, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _name, service, dockerfile = next(b for b in built(services) if b[0] == "sipp")
    argv = command_of(service, dockerfile)
    assert argv[:2] == ["python", "/opt/ivr/docker/sipp_flows.py"]
    flows = load_module(REPO / "docker" / "sipp_flows.py")
    for flow in FLOWS:
        assert flows.arguments([flow]).flow == flow
    load_argv = command_of(services["sipp-load"], dockerfile)[2:]
    load = flows.arguments([re.sub(r"\$\{\w+:-(\w+)\}", r"\1", a) for a in load_argv])
    assert (load.flow, load.rate, load.calls) == ("load", 5.0, 100)

    from ivr.notices.catalogue import BuiltSegment, Manifest, load_catalogue
    from testpbx.paths import Paths

    catalogue = load_catalogue()
    manifest = Manifest(notices=catalogue.notice, segments=[
        BuiltSegment(**s.model_dump(), file=f"{s.id}.wav", sha256="0" * 64, duration_ms=3000)
        for s in catalogue.segment])
    settings = container_settings(service, monkeypatch)
    sipp = Sipp(Paths(cache=tmp_path, state=tmp_path))
    for flow, call in flows.calls(settings, manifest).items():
        assert settings.line_for(call.number) is not None, flow
        scenario = sipp.scenario(call.actions, call.hold_ms)
        ET.parse(scenario)  # well-formed, every @@place@@ filled
        assert not re.search(r"@@[a-z_]+@@", scenario.read_text()), flow
        for pcap in re.findall(r'play_pcap_audio="([^"]+)"', scenario.read_text()):
            # SIPp's own speech, or the RFC 4733 presses written beside the scenarios (in
            # the container: IVR_STATE_DIR, the sipp-runs volume)
            assert pcap.startswith("/usr/share/sip-tester/") or (
                Path(pcap).is_relative_to(sipp.dir) and Path(pcap).is_file()), (flow, pcap)
    for answering in ("agent.xml", "customer.xml"):
        assert (SCENARIOS / answering).is_file()
