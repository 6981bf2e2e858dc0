"""The per-rule conda environments agree with requirements.txt, and every rule names one."""

import re

import yaml

from tests.support.workflow import REPO


def pins(lines):
    """{package: version} of `name==version` lines (names normalised as pip does)."""
    found = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[re.sub(r"[-_.]+", "-", name.lower())] = version.strip()
    return found


def requirement_pins():
    return pins((REPO / "requirements.txt").read_text().splitlines())


def env_pins(path):
    env = yaml.safe_load(path.read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    return pins(pip)


def test_every_env_pins_the_same_versions_as_requirements():
    required = requirement_pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for path in envs:
        for name, version in env_pins(path).items():
            assert name in required, f"{path.name}: {name} is not in requirements.txt"
            assert version == required[name], f"{path.name}: {name}=={version}, requirements.txt has {required[name]}"


def test_every_rule_that_runs_code_names_an_existing_env():
    rule = re.compile(r"^rule (\w+):", re.M)
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in rule.finditer(text)] + [len(text)]
        for begin, end in zip(starts, starts[1:]):
            body = text[begin:end]
            name = rule.match(body).group(1)
            if "script:" not in body and "shell:" not in body:
                continue  # a target rule
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            assert env, f"{smk.name}: rule {name} names no conda env"
            assert (smk.parent / env.group(1)).resolve().exists(), f"rule {name}: {env.group(1)} missing"
