"""What a newcomer installs: one heavy tox environment, and the README's way to a CPU-only torch."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tox_builds_one_heavy_environment_and_passes_pip_settings_through():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    envs = [e.strip() for e in tox["tox"]["env_list"].split(",")]
    installing = [e for e in envs if tox.get(f"testenv:{e}", "skip_install", fallback="false").strip() != "true"]
    assert installing == ["py"]  # lint and smoke install nothing: smoke runs py's bench
    assert "{work_dir}{/}py{/}bin{/}bench run --preset smoke --threads 1" in tox["testenv:smoke"]["commands"]
    # the smoke numbers are guarded: compared with the committed reference, which exists
    assert "bench compare --results {env_tmp_dir}{/}results --against {tox_root}{/}benchmarks{/}reference{/}smoke.json" \
        in tox["testenv:smoke"]["commands"]
    assert (ROOT / "benchmarks" / "reference" / "smoke.json").is_file()
    # the README's PIP_EXTRA_INDEX_URL (the CPU-only torch) must reach pip inside tox
    assert "PIP_*" in tox["testenv"]["pass_env"]


def test_the_readme_says_how_to_install_the_cpu_only_torch():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu tox" in readme
