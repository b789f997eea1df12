import pytest

from kdforge.config import RunConfig, apply_overrides, from_dict, load_recipe, merge_recipes, read_recipe
from kdforge.errors import KdforgeError


def test_defaults_and_roundtrip():
    cfg = from_dict({})
    assert isinstance(cfg, RunConfig)
    assert from_dict(cfg.to_dict()) == cfg


def test_unknown_key_names_nearest():
    with pytest.raises(KdforgeError, match=r"train\.lrr.*did you mean: lr"):
        from_dict({"train": {"lrr": 1}})
    with pytest.raises(KdforgeError, match="unknown config key 'studnet'"):
        from_dict({"studnet": {}})


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        ({"train": {"epochs": "three"}}, "train.epochs' must be of type int"),
        ({"train": {"lr": "fast"}}, "train.lr' must be of type float"),
        ({"train": {"deterministic": 1}}, "true/false"),
        ({"data": 5}, "must be a mapping"),
        ({"schema_version": 99}, "schema_version 99"),
    ],
)
def test_wrong_types(data, msg):
    with pytest.raises(KdforgeError, match=msg):
        from_dict(data)


def test_int_accepted_for_float():
    assert from_dict({"train": {"lr": 1}}).train.lr == 1.0


def test_overrides_parse_yaml_values(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: a\ntrain: {lr: 0.1}\n")
    cfg = load_recipe(p, ["train.lr=0.01", "method.kwargs.temperature=2", "teacher.name=cnn", "seed=3"])
    assert cfg.train.lr == 0.01 and cfg.seed == 3
    assert cfg.method.kwargs == {"temperature": 2}
    assert cfg.teacher is not None and cfg.teacher.name == "cnn"
    with pytest.raises(KdforgeError, match="key=value"):
        apply_overrides({}, ["train.lr"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(KdforgeError, match="does not exist"):
        load_recipe(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("train: {lr: [\n")
    with pytest.raises(KdforgeError, match="not valid YAML"):
        load_recipe(p)


def test_fingerprint_ignores_epochs_but_not_lr():
    a = from_dict({})
    assert a.fingerprint() == from_dict({"train": {"epochs": 50}}).fingerprint()
    assert a.fingerprint() != from_dict({"train": {"lr": 0.5}}).fingerprint()
    assert a.fingerprint() != from_dict({"seed": 1}).fingerprint()


def test_recipe_fingerprint_groups_seeds_but_not_lengths():
    a = from_dict({"seed": 0, "name": "a", "train": {"epochs": 3}})
    assert a.fingerprint() != from_dict({"seed": 1, "train": {"epochs": 3}}).fingerprint()
    same_recipe = {"seed": 1, "name": "b", "output_dir": "x", "train": {"epochs": 3}}
    assert a.recipe_fingerprint() == from_dict(same_recipe).recipe_fingerprint()
    assert a.recipe_fingerprint() != from_dict({"train": {"epochs": 4}}).recipe_fingerprint()
    assert a.recipe_fingerprint() != from_dict({"train": {"epochs": 3, "lr": 0.1}}).recipe_fingerprint()


def _with_teacher(output_dir, checkpoint):
    return {"output_dir": str(output_dir), "teacher": {"name": "mlp", "checkpoint": checkpoint}}


def test_fingerprint_counts_paths_below_the_output_dir_relative_to_it(tmp_path):
    here = from_dict(_with_teacher(tmp_path / "a", "{output_dir}/teacher/student.safetensors"))
    moved = from_dict(_with_teacher(tmp_path / "b", "{output_dir}/teacher/student.safetensors"))
    assert here.teacher.checkpoint != moved.teacher.checkpoint  # absolute, each below its own dir
    assert here.fingerprint() == moved.fingerprint()
    assert here.recipe_fingerprint() == moved.recipe_fingerprint()
    other_file = from_dict(_with_teacher(tmp_path / "a", "{output_dir}/teacher2/student.safetensors"))
    assert here.fingerprint() != other_file.fingerprint()
    # a teacher outside the output dir is a different file wherever it lies: it still counts
    outside_a = from_dict(_with_teacher(tmp_path / "a", str(tmp_path / "t1.safetensors")))
    outside_b = from_dict(_with_teacher(tmp_path / "a", str(tmp_path / "t2.safetensors")))
    assert outside_a.fingerprint() != outside_b.fingerprint()
    # a sibling directory whose name starts like the output dir is not below it
    sibling = from_dict(
        _with_teacher(tmp_path / "a", str(tmp_path / "ab" / "teacher" / "student.safetensors"))
    )
    assert sibling.fingerprint() != here.fingerprint()


def test_fingerprint_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    recipe = {
        "data": {"name": "idx", "data_dir": str(tmp_path / "one" / "data")},
        "output_dir": "/elsewhere/runs",
    }
    fingerprints = []
    for cwd in ("one", "two"):  # resuming from another directory must find the same recipe
        (tmp_path / cwd).mkdir()
        monkeypatch.chdir(tmp_path / cwd)
        fingerprints.append(from_dict(recipe).fingerprint())
    assert fingerprints[0] == fingerprints[1]


def test_a_fingerprint_written_before_portable_paths_still_matches(tmp_path):
    cfg = from_dict(_with_teacher(tmp_path / "a", "{output_dir}/teacher/student.safetensors"))
    legacy = cfg._hash(with_seed=True, with_length=False, portable=False)
    assert legacy != cfg.fingerprint()  # the absolute path used to be hashed
    assert cfg.matches_fingerprint(legacy) and cfg.matches_fingerprint(cfg.fingerprint())
    assert not cfg.matches_fingerprint(from_dict({"seed": 5}).fingerprint())
    assert not cfg.matches_fingerprint(None)


def test_recipe_bases_merge_mappings_and_replace_the_rest(tmp_path):
    (tmp_path / "_common.yaml").write_text(
        "seed: 3\nstudent: {name: mlp, kwargs: {hidden: [64, 64], dropout: 0.1}}\n"
        "train: {lr: 0.1, epochs: 2}\n"
    )
    (tmp_path / "_method.yaml").write_text("method: {name: kd, kwargs: {temperature: 4.0, alpha: 0.9}}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text(
        "base: [../_common.yaml, ../_method.yaml]\nname: child\n"
        "student: {kwargs: {hidden: [32]}}\nmethod: {kwargs: {alpha: 0.5}}\n"
    )
    (tmp_path / "grandchild.yaml").write_text("base: sub/child.yaml\ntrain: {lr: 0.3}\n")
    cfg = load_recipe(tmp_path / "sub" / "child.yaml")
    assert cfg.name == "child" and cfg.seed == 3 and cfg.train.lr == 0.1 and cfg.train.epochs == 2
    assert cfg.student.kwargs == {"hidden": [32], "dropout": 0.1}  # lists replace, mappings merge
    assert cfg.method.name == "kd" and cfg.method.kwargs == {"temperature": 4.0, "alpha": 0.5}
    grand = load_recipe(tmp_path / "grandchild.yaml", ["train.epochs=5"])  # chains, then overrides
    assert (grand.name, grand.train.lr, grand.train.epochs) == ("child", 0.3, 5)
    assert grand.student.kwargs["hidden"] == [32]
    assert read_recipe(tmp_path / "grandchild.yaml")["method"]["kwargs"]["alpha"] == 0.5
    assert merge_recipes({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize(
    ("files", "msg"),
    [
        ({"r.yaml": "base: missing.yaml\n"}, r"'.*missing.yaml' \(the base of '.*r.yaml'\) does not exist"),
        ({"r.yaml": "base: 5\n"}, "must be a path or a list of paths"),
        ({"r.yaml": "base: a.yaml\n", "a.yaml": "base: r.yaml\n"}, r"cycle: r.yaml -> a.yaml -> r.yaml"),
        ({"r.yaml": "base: a.yaml\n", "a.yaml": "[1, 2]\n"}, "mapping at the top level"),
        ({"r.yaml": "base: a.yaml\n", "a.yaml": "train: {lrr: 1}\n"}, r"unknown config key 'train.lrr'"),
    ],
)
def test_recipe_base_errors(tmp_path, files, msg):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(KdforgeError, match=msg):
        load_recipe(tmp_path / "r.yaml")
