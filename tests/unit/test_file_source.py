"""The file source: a directory of YAML published into the store, one partition per file, with
last-good semantics for broken files and invalid objects."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from pilotpy.model import Key, parse_object
from pilotpy.model.kube import Service
from pilotpy.model.virtualservice import VirtualService
from pilotpy.problems import Problem, ProblemLog, Reason
from pilotpy.sources import files
from pilotpy.sources.file_limits import FileLimits
from pilotpy.sources.files import FileSource, discover
from pilotpy.store import ChangeSet, Store


def service_yaml(name: str, port: int = 80, namespace: str | None = None) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}{ns}
spec:
  ports:
  - name: http
    port: {port}
"""


def vs_yaml(name: str, weight: int = 100) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: [{name}]
  http:
  - route:
    - destination: {{host: {name}, subset: v1}}
      weight: {weight}
    - destination: {{host: {name}, subset: v2}}
      weight: 0
"""


class Config:
    """A config directory, its source, the store and the diagnostics."""

    def __init__(self, root: Path, default_namespace: str = "default",
                 limits: FileLimits | None = None) -> None:
        self.root = root
        self.store = Store(clock=time.monotonic)
        self.problem_log = ProblemLog()
        self.source = FileSource([root], self.store, self.problem_log,
                                 default_namespace=default_namespace, limits=limits)
        self._mtime = time.time_ns()

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        # The source notices edits by (mtime, size, inode); give every write a distinct mtime
        # so two same-size edits within one timestamp tick are not taken for one.
        self._mtime += 1_000_000_000
        os.utime(path, ns=(self._mtime, self._mtime))
        return path

    def scan(self) -> ChangeSet:
        self.source.load()
        return self.store.snapshot()

    def problems(self) -> list[Problem]:
        return self.problem_log.problems()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(tmp_path)


def services(change_set: ChangeSet) -> dict[Key, Service]:
    out = {}
    for k, obj in change_set.objects.get("Service", {}).items():
        assert isinstance(obj, Service)
        out[k] = obj
    return out


def svc_key(name: str, namespace: str = "default") -> Key:
    return Key("Service", namespace, name)


def test_multi_document_files_are_read(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a") + "---\n" + service_yaml("b") + "---\n")
    snapshot = config.scan()
    assert set(services(snapshot)) == {svc_key("a"), svc_key("b")}
    assert config.problems() == []


def test_kind_list_is_expanded(config: Config) -> None:
    config.write("list.yaml", """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: b, namespace: other}
  spec: {ports: [{port: 80}]}
""")
    assert set(services(config.scan())) == {svc_key("a"), svc_key("b", "other")}


def test_objects_without_namespace_get_the_default_namespace(tmp_path: Path) -> None:
    config = Config(tmp_path, default_namespace="bookinfo")
    config.write("svc.yaml", service_yaml("a") + "---\n" + service_yaml("b", namespace="x"))
    assert set(services(config.scan())) == {svc_key("a", "bookinfo"), svc_key("b", "x")}


def test_json_files_and_nested_directories_are_read(config: Config) -> None:
    config.write("nested/deeper/svc.json", '{"apiVersion": "v1", "kind": "Service", '
                 '"metadata": {"name": "j"}, "spec": {"ports": [{"port": 80}]}}')
    assert set(services(config.scan())) == {svc_key("j")}


def test_a_single_file_path_is_read(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(service_yaml("a"), encoding="utf-8")
    store = Store(clock=time.monotonic)
    FileSource([path], store, ProblemLog()).load()
    assert set(store.snapshot().objects["Service"]) == {svc_key("a")}


def test_kinds_pilotpy_does_not_read_are_ignored_quietly(config: Config) -> None:
    config.write("mixed.yaml", """apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
spec: {replicas: 1}
---
""" + service_yaml("a"))
    assert set(services(config.scan())) == {svc_key("a")}
    assert config.problems() == []


def test_editing_a_file_updates_its_objects(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a", 80))
    config.scan()
    config.write("svc.yaml", service_yaml("a", 81))
    snapshot = config.scan()
    assert snapshot.changed == {svc_key("a")}
    assert services(snapshot)[svc_key("a")].ports[0].port == 81


def test_an_unchanged_file_changes_nothing(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a"))
    config.scan()
    config.source.load()
    assert not config.store.pending


def test_rewriting_a_file_with_the_same_objects_changes_nothing(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a"))
    config.scan()
    config.write("svc.yaml", "# a comment\n" + service_yaml("a"))
    config.source.load()
    assert not config.store.pending


def test_adding_and_deleting_files(config: Config) -> None:
    config.write("a.yaml", service_yaml("a"))
    config.scan()
    b = config.write("b.yaml", service_yaml("b"))
    snapshot = config.scan()
    assert snapshot.changed == {svc_key("b")}
    assert set(services(snapshot)) == {svc_key("a"), svc_key("b")}
    b.unlink()
    snapshot = config.scan()
    assert snapshot.changed == {svc_key("b")}
    assert set(services(snapshot)) == {svc_key("a")}


def test_removing_an_object_from_a_file_deletes_it(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a") + "---\n" + service_yaml("b"))
    config.scan()
    config.write("svc.yaml", service_yaml("a"))
    snapshot = config.scan()
    assert snapshot.changed == {svc_key("b")}
    assert set(services(snapshot)) == {svc_key("a")}


def test_broken_yaml_keeps_the_last_good_objects_and_names_the_line(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a") + "---\n" + service_yaml("b"))
    config.scan()
    # service_yaml is 8 lines, then `---`: the bad indentation is on line 12.
    config.write("svc.yaml", service_yaml("a") + "---\nkind: Service\nmetadata: {}\n"
                 "  name: b\n")
    snapshot = config.scan()
    assert snapshot.changed == frozenset()
    assert set(services(snapshot)) == {svc_key("a"), svc_key("b")}
    (problem,) = config.problems()
    assert problem.is_error and problem.reason is Reason.UNREADABLE
    assert problem.source == str(config.root / "svc.yaml")
    assert problem.message.startswith("line 12: invalid YAML")


def test_broken_yaml_in_a_new_file_serves_nothing_from_it(config: Config) -> None:
    config.write("svc.yaml", "kind: Service\n  bad: indent\n")
    snapshot = config.scan()
    assert services(snapshot) == {}
    (problem,) = config.problems()
    assert problem.message.startswith("line 2: ")


def test_problems_are_cleared_when_the_file_is_fixed(config: Config) -> None:
    config.write("svc.yaml", "kind: [\n")
    config.scan()
    assert config.problem_log.errors()
    config.write("svc.yaml", service_yaml("a"))
    snapshot = config.scan()
    assert config.problems() == []
    assert set(services(snapshot)) == {svc_key("a")}


def test_problems_of_a_deleted_file_are_cleared(config: Config) -> None:
    path = config.write("svc.yaml", "kind: [\n")
    config.scan()
    path.unlink()
    config.scan()
    assert config.problems() == []


def test_an_object_turning_invalid_keeps_its_last_good_version(config: Config) -> None:
    config.write("vs.yaml", vs_yaml("reviews", weight=100))
    config.scan()
    config.write("vs.yaml", vs_yaml("reviews", weight=-5))
    snapshot = config.scan()
    assert snapshot.changed == frozenset()
    kept = snapshot.objects["VirtualService"][Key("VirtualService", "default", "reviews")]
    assert isinstance(kept, VirtualService)
    assert kept.http[0].route[0].weight == 100
    problems = config.problems()  # one per bad field
    assert all(p.is_error and p.reason is Reason.INVALID for p in problems)
    assert {p.ref for p in problems} == {Key("VirtualService", "default", "reviews")}
    assert "spec.http[0].route[0].weight" in {p.field for p in problems}
    assert all("keeping its last valid version" in p.message for p in problems)


def test_a_new_invalid_object_is_skipped_and_its_siblings_served(config: Config) -> None:
    config.write("vs.yaml", vs_yaml("reviews") + "---\n" + vs_yaml("ratings", weight=-1)
                 + "---\n" + service_yaml("a"))
    snapshot = config.scan()
    assert set(snapshot.objects["VirtualService"]) == {
        Key("VirtualService", "default", "reviews")}
    assert set(services(snapshot)) == {svc_key("a")}
    problems = config.problems()
    assert {p.ref for p in problems} == {Key("VirtualService", "default", "ratings")}
    assert "spec.http[0].route[0].weight" in {p.field for p in problems}
    assert not any("keeping" in p.message for p in problems)


def test_an_invalid_object_removed_from_the_file_goes_away(config: Config) -> None:
    config.write("vs.yaml", vs_yaml("reviews") + "---\n" + service_yaml("a"))
    config.scan()
    config.write("vs.yaml", vs_yaml("reviews", weight=-1) + "---\n" + service_yaml("a"))
    config.scan()
    config.write("vs.yaml", service_yaml("a"))
    snapshot = config.scan()
    assert snapshot.changed == {Key("VirtualService", "default", "reviews")}
    assert snapshot.objects["VirtualService"] == {}
    assert config.problems() == []


def test_an_object_defined_twice_in_one_file_is_reported(config: Config) -> None:
    """kubectl apply applies both documents: the last one stays."""
    config.write("svc.yaml", service_yaml("a", 80) + "---\n" + service_yaml("a", 81))
    snapshot = config.scan()
    assert services(snapshot)[svc_key("a")].ports[0].port == 81
    (problem,) = config.problems()
    assert not problem.is_error and problem.reason is Reason.DUPLICATE
    assert problem.ref == svc_key("a")
    assert "document 2" in problem.message


def test_the_same_object_in_two_files_comes_from_the_last_file(config: Config) -> None:
    """As `kubectl apply -f dir`, which applies the files in name order."""
    config.write("b.yaml", service_yaml("a", 81))
    config.write("a.yaml", service_yaml("a", 80))
    assert services(config.scan())[svc_key("a")].ports[0].port == 81


def test_warnings_are_reported_but_the_object_is_served(config: Config) -> None:
    config.write("svc.yaml", service_yaml("a").replace("spec:\n", "spec:\n  tpye: ClusterIP\n"))
    snapshot = config.scan()
    assert set(services(snapshot)) == {svc_key("a")}
    (problem,) = config.problems()
    assert not problem.is_error and problem.reason is Reason.UNKNOWN_FIELD
    assert problem.field == "spec.tpye"
    assert config.problem_log.errors() == []


@pytest.mark.parametrize("name", [".hidden.yaml", ".git/config.yaml", "#autosave.yaml",
                                  "backup.yaml~", "notes.txt", "README.md", "dir~/svc.yaml"])
def test_hidden_backup_and_other_files_are_ignored(config: Config, name: str) -> None:
    config.write(name, service_yaml("ignored"))
    config.write("svc.yaml", service_yaml("a"))
    assert set(services(config.scan())) == {svc_key("a")}
    assert discover([config.root]) == [config.root / "svc.yaml"]


def test_documents_that_are_not_objects_are_reported(config: Config) -> None:
    config.write("svc.yaml", "just a string\n---\n" + service_yaml("a") + "---\n"
                 "metadata: {name: no-kind}\n")
    snapshot = config.scan()
    assert set(services(snapshot)) == {svc_key("a")}
    assert len(config.problem_log.errors()) == 2


def test_an_empty_file_provides_nothing(config: Config) -> None:
    config.write("empty.yaml", "")
    config.write("comments.yaml", "# nothing here\n---\n")
    assert config.scan().objects == {}
    assert config.problems() == []


# -- hostile and broken files (docs/operations.md#limits) ------------------------------------

POLICY = Key("AuthorizationPolicy", "default", "deny")


def policy_yaml(levels: int = 0, leaf: str = "x") -> str:
    """An AuthorizationPolicy whose spec nests `levels` mappings under `rules` (kept as
    written: pilotpy stores it without enforcing it)."""
    nested = "".join(f"{'  ' * (i + 2)}a:\n" for i in range(levels))
    return ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            "metadata: {name: deny}\nspec:\n  rules:\n"
            + (nested + "  " * (levels + 2) + leaf if levels else f"  - from: [{leaf}]")
            + "\n")


def test_a_deeply_nested_object_is_refused_and_its_file_keeps_what_it_held(
        config: Config) -> None:
    path = config.write("policy.yaml", policy_yaml())
    config.scan()
    config.write("policy.yaml", policy_yaml(1000))
    assert config.scan().changed == frozenset()
    (problem,) = config.problems()
    assert problem.is_error and problem.source == str(path)
    assert problem.message.startswith("line 104: past a limit: nested more than 100 levels "
                                      "deep (at spec.rules.a.a.a")
    config.write("policy.yaml", policy_yaml(1000, leaf="y"))  # edited again
    assert config.scan().changed == frozenset()
    path.unlink()
    assert config.scan().changed == {POLICY}
    assert config.problems() == []


def test_an_alias_bomb_is_refused(config: Config) -> None:
    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"  {name}: &{name} [{', '.join(['*' + previous] * 9)}]"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)]
    config.write("bomb.yaml", policy_yaml().replace("  rules:\n  - from: [x]\n",
                                                   "  " + "\n".join(laughs) + "\n"))
    snapshot = config.scan()
    assert POLICY not in snapshot.objects.get("AuthorizationPolicy", {})
    (problem,) = config.problems()
    assert "aliases expand to more than 100000 nodes" in problem.message


def test_a_file_over_the_size_limit_keeps_what_it_held(tmp_path: Path) -> None:
    config = Config(tmp_path, limits=FileLimits(max_file_bytes=2000))
    config.write("svc.yaml", service_yaml("a"))
    config.scan()
    config.write("svc.yaml", service_yaml("b") + "#" * 2000 + "\n")
    snapshot = config.scan()
    assert snapshot.changed == frozenset()
    (problem,) = config.problems()
    assert problem.message == ("larger than the 2000 bytes a file may hold "
                               "(--max-config-file-size); serving what it held before")


def test_a_file_with_more_objects_than_the_limit_keeps_what_it_held(tmp_path: Path) -> None:
    config = Config(tmp_path, limits=FileLimits(max_objects=3))
    config.write("svc.yaml", service_yaml("a"))
    config.scan()
    config.write("svc.yaml", "---\n".join(service_yaml(n) for n in "abcd"))
    assert config.scan().changed == frozenset()
    (problem,) = config.problems()
    assert problem.message.startswith("holds 4 objects, more than the 3 a file may hold")


def test_fifos_and_broken_links_named_like_config_files_are_reported_and_skipped(
        config: Config) -> None:
    config.write("svc.yaml", service_yaml("a"))
    os.mkfifo(config.root / "fifo.yaml")
    (config.root / "dangling.yaml").symlink_to(config.root / "nowhere.yaml")
    (config.root / "loop.yaml").symlink_to(config.root / "loop.yaml")
    assert set(services(config.scan())) == {svc_key("a")}
    assert {(Path(p.source).name, p.message, p.is_error) for p in config.problems()} == {
        ("fifo.yaml", "a FIFO, not a regular file; skipped", False),
        ("dangling.yaml", "a symbolic link to nothing; skipped", False),
        ("loop.yaml", "a loop of symbolic links; skipped", False)}
    for name in ("fifo.yaml", "dangling.yaml", "loop.yaml"):
        (config.root / name).unlink()
    config.scan()
    assert config.problems() == []


def test_a_failure_reading_one_file_costs_that_file_only(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    real = parse_object

    def broken_for_b(doc: Any, **kwargs: Any) -> Any:
        if doc["metadata"]["name"] == "b":
            raise RuntimeError("a bug")
        return real(doc, **kwargs)

    monkeypatch.setattr(files, "parse_object", broken_for_b)
    config.write("a.yaml", service_yaml("a"))
    config.write("b.yaml", service_yaml("b"))
    assert set(services(config.scan())) == {svc_key("a")}
    (problem,) = config.problems()
    assert problem.source == str(config.root / "b.yaml")
    assert problem.message == ("could not be read (RuntimeError: a bug); serving what it held "
                               "before")
