from kdforge.quickstart import quickstart, quickstart_recipes


def test_quickstart_end_to_end_on_digits(tmp_path):
    r = quickstart(str(tmp_path), "digits", None, epochs=6, seed=0, progress=False)
    names = [s["name"] for s in r["summaries"]]
    assert names == ["teacher", "student_alone", "student_kd"]
    teacher, alone, kd = r["summaries"]
    assert teacher["student_params"] > 10 * alone["student_params"] == 10 * kd["student_params"]
    assert kd["teacher_params"] == teacher["student_params"]
    assert all(s["test_acc"] > 0.5 for s in r["summaries"])  # real training, 10 classes
    assert r["table"].count("\n") == 4 and "| student_kd |" in r["table"]
    # --resume keeps finished runs
    again = quickstart(str(tmp_path), "digits", None, epochs=6, seed=0, progress=False, resume=True)
    assert [s["test_acc"] for s in again["summaries"]] == [s["test_acc"] for s in r["summaries"]]


def test_quickstart_settings():
    teacher, alone, kd = quickstart_recipes("o", {}, 3, 0)
    assert alone["train"]["lr"] == kd["train"]["lr"] == 0.006 and teacher["train"]["lr"] == 0.002
    assert kd["method"]["kwargs"] == {"temperature": 2.0, "alpha": 0.5}
    assert kd["teacher"]["checkpoint"].endswith("teacher/student.safetensors")
