from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = 'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]"'


def readme_commands() -> list[str]:
    head = (ROOT / "README.md").read_text().split("---")[0]
    return [line for line in head.splitlines() if line.startswith("python3 -m venv")]


def test_readme_opens_with_the_main_job_and_test_commands():
    main_job, tests = readme_commands()
    assert main_job == f"{SETUP} && hf-mmdl quickstart"
    assert tests == f"{SETUP} && python -m pytest -q"


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines
