"""Every bad-input surface of the command line (issue 10): malformed litmus TOML, ITF traces,
plain JSON traces, explore configurations, telemetry files, numeric options and output paths
each end in exit 2 with exactly one line on stderr naming the problem, no traceback, and an
output file that existed before the run is left as it was.

The cases run in-process through kvclaims.cli.main (the console script's entry point), which
is what makes a few hundred of them cheap; test_console_script_* run the installed script."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvclaims.checker.configio import config_to_dict
from kvclaims.checker.explore import explore
from kvclaims.checker.itf import trace_to_itf
from kvclaims.checker.litmus import LITMUS_DIR
from kvclaims.cli import main
from kvclaims.model.telemetry import dump_jsonl
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

ONE = Config(usable=4, cap=3, claims=(ClaimConfig(3, 0, 2, 0, 0, 0),),
             requests=(RequestConfig(3),))
SENTINEL = "written before the run\n"
L3 = (LITMUS_DIR / "L3.toml").read_text()


def run(capsys, args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(capsys, args, needle=""):
    code, _, err = run(capsys, args)
    assert code == 2, f"{args}: exit {code}, stderr {err[-500:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{args}: {err[-800:]}"
    assert "Traceback" not in err and "MemoryError" not in err
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def itf_doc():
    return trace_to_itf(explore(ONE, POLICIES["native"], max_clock=2).traces["O3"])


@pytest.fixture
def sentinel(tmp_path):
    """A pre-existing output file that every failed run must leave unchanged."""
    p = tmp_path / "previous.json"
    p.write_text(SENTINEL)
    yield p
    assert p.read_text() == SENTINEL


# --- litmus scenario files -------------------------------------------------------------------

def _swap(old: str, new: str):
    return lambda text: text.replace(old, new)


ADMIT, DEFER = '{ action = "admit", request = 0 }', '{ action = "defer", request = 0 }'
LITMUS_BAD = [
    ("variants_false", _swap("[variants.full]", "variants = false\n[x.full]"), ""),
    ("claim_slot_out_of_range", _swap('"accept", claim = 0', '"accept", claim = 7'),
     "claim slot 7 is out of range"),
    ("request_slot_negative", _swap(DEFER, DEFER.replace("0", "-1")),
     "non-negative integer 'request'"),
    ("unknown_choice", _swap(ADMIT, ADMIT.replace(" }", ", teleport = 1 }")),
     "has no choice 'teleport'"),
    ("choice_wrong_sort", _swap(ADMIT, ADMIT.replace(" }", ", admit = 3 }")),
     "must be a boolean"),
    ("huge_usable", lambda t: t.replace("usable = 80", "usable = 1000000000000000000"),
     "out of range"),
    ("steps_not_array", lambda t: t.replace("steps = [", "steps = 5\nx = ["), "'steps'"),
    ("expect_not_table", lambda t: t.replace("[expect.full.hard_refuse]",
                                             "[y]").replace("[expect.full.native]", "[z]")
     .replace("[expect.scaled.hard_refuse]", "[w]").replace("[expect.scaled.native]", "[v]")
     .replace('shows =', 'expect = 3\nshows ='), "'expect'"),
    ("unknown_observation", lambda t: t.replace("served = false", "servd = false", 1),
     "unknown observation"),
    ("unknown_policy", lambda t: t.replace("[expect.full.native]", "[expect.full.nonesuch]"),
     "unknown policy"),
    ("unknown_mode", lambda t: t.replace('predicate = "leading_prefix_at_least(60)"',
                                         'predicate = "leading_prefix_at_least(60)", '
                                         'mode = "very_hard"'), "unknown protection mode"),
    ("mode_99", lambda t: t.replace('predicate = "leading_prefix_at_least(60)"',
                                    'predicate = "leading_prefix_at_least(60)", mode = 99'),
     "unknown protection mode"),
    ("bad_predicate", lambda t: t.replace("leading_prefix_at_least(60)", "most_of(60)"),
     "bad predicate"),
    ("predicate_digits", lambda t: t.replace("leading_prefix_at_least(60)",
                                             "leading_prefix_at_least(" + "9" * 5000 + ")"),
     "bad predicate"),
    ("claims_null_like", lambda t: t.replace("claims = [{ footprint = 60, predicate = "
                                             "\"leading_prefix_at_least(60)\" }]",
                                             "claims = 0", 1), "'claims' must be a list"),
    ("id_not_string", lambda t: t.replace('id = "L3"', "id = 3"), "'id' must be a string"),
    ("not_toml", lambda t: t + "\n[[[", "not valid TOML"),
    ("deep_arrays", lambda t: t + "\ndeep = " + "[" * 5000 + "]" * 5000, ""),
    ("int_5000_digits", lambda t: t + "\nbig = " + "9" * 5000, ""),
    ("empty", lambda t: "", "missing 'id'"),
]


@pytest.mark.parametrize("name,mutate,needle", LITMUS_BAD, ids=[c[0] for c in LITMUS_BAD])
def test_litmus_file(capsys, tmp_path, sentinel, name, mutate, needle):
    p = tmp_path / f"{name}.toml"
    p.write_text(mutate(L3))
    assert_bad_input(capsys, ["litmus", p, "--json", sentinel], needle)


def test_litmus_file_not_utf8_and_missing(capsys, tmp_path, sentinel):
    p = tmp_path / "latin1.toml"
    p.write_bytes(L3.encode() + b"\n# caf\xe9\n")
    assert_bad_input(capsys, ["litmus", p, "--json", sentinel], "not UTF-8")
    assert_bad_input(capsys, ["litmus", tmp_path / "nope.toml"], "no such")
    assert_bad_input(capsys, ["litmus", tmp_path], "not a regular file")


# --- ITF traces (refine and explore --replay) ------------------------------------------------

def _set(path, value):
    def mutate(d):
        *head, last = path
        x = d
        for k in head:
            x = x[k]
        x[last] = value
    return mutate


ITF_BAD = [
    ("usable_1e30", _set(["#meta", "config", "usable"], 10 ** 30), "usable"),
    ("need_1e9", _set(["#meta", "config", "requests", 0, "need"], 10 ** 9), "need"),
    ("claims_null", _set(["#meta", "config", "claims"], None), "'claims' must be a list"),
    ("mode_99", _set(["#meta", "config", "claims", 0, "mode"], 99), "unknown protection mode"),
    ("policy_unknown", _set(["#meta", "policy"], "all_or_nothing"), "unknown policy"),
    ("policy_not_string", _set(["#meta", "policy"], [1]), "unknown policy"),
    ("goal_O99", _set(["#meta", "goal"], "O99"), "unknown obligation 'O99'"),
    ("unknown_pick", _set(["states", 4, "mbt::nondetPicks", "warp"], [1]), "no choice 'warp'"),
    ("slot_7", _set(["states", 4, "mbt::nondetPicks", "request"], [7]), "out of range"),
    ("slot_missing", _set(["states", 4, "mbt::nondetPicks", "request"], []),
     "needs the pick 'request'"),
    ("pick_not_sequence", _set(["states", 4, "mbt::nondetPicks", "take_0"], 2), "expected []"),
    ("pick_sort", _set(["states", 4, "mbt::nondetPicks", "admit"], [5]), "must be a boolean"),
    ("take_huge", _set(["states", 4, "mbt::nondetPicks", "take_0"], [10 ** 15]),
     "must be an integer 0..1000000"),
    ("bigint_5000", _set(["states", 1, "clock"], {"#bigint": "9" * 5000}),
     "expected an integer"),
    ("action_number", _set(["states", 2, "mbt::actionTaken"], 7), "unknown action"),
    ("state_list", _set(["states", 1], []), "a state must be an object"),
    ("states_dict", _set(["states"], {}), "not an ITF trace"),
    ("meta_missing", lambda d: d.pop("#meta"), "'#meta' must carry"),
    ("claims_wrong_length", _set(["states", 0, "claims"], []), "expected a list of 1 records"),
    ("status_unknown", _set(["states", 3, "claims", 0, "status"], "HAPPY"), "expected one of"),
    ("named_out_of_range", _set(["states", 3, "requests", 0, "named"], {"#set": [9]}),
     "claim index out of range"),
    ("extra_config_field", _set(["#meta", "config", "colour"], 1), "unknown field(s) colour"),
]


def _write(tmp_path, name, data) -> Path:
    p = tmp_path / f"{name}.itf.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


@pytest.mark.parametrize("command", ["refine", "replay"])
@pytest.mark.parametrize("name,mutate,needle", ITF_BAD, ids=[c[0] for c in ITF_BAD])
def test_itf_trace(capsys, tmp_path, itf_doc, command, name, mutate, needle):
    d = copy.deepcopy(itf_doc)
    mutate(d)
    p = _write(tmp_path, name, d)
    args = ["refine", p] if command == "refine" else ["explore", "--replay", p]
    assert_bad_input(capsys, args, needle)


RAW_BAD = [
    ("deep_100k", "[" * 100_000 + "]" * 100_000, "nested deeper"),
    ("deep_40", "[" * 40 + "]" * 40, "nested deeper than the limit of 32"),
    ("int_5000_digits", '{"states": [' + "9" * 5000 + "]}", "digits"),
    ("nan", '{"usable": NaN}', "not JSON"),
    ("truncated", '{"#meta": {', "not JSON"),
    ("top_list", "[1, 2]", "not a trace"),
]


@pytest.mark.parametrize("name,text,needle", RAW_BAD, ids=[c[0] for c in RAW_BAD])
def test_raw_json(capsys, tmp_path, name, text, needle):
    p = _write(tmp_path, name, text)
    assert_bad_input(capsys, ["refine", p], needle)
    assert_bad_input(capsys, ["explore", "--config", p.rename(tmp_path / f"{name}.json")],
                     "" if name == "top_list" else needle)


def test_non_utf8_and_oversized(capsys, tmp_path):
    p = tmp_path / "bin.itf.json"
    p.write_bytes(b'{"a": "\xff\xfe"}')
    assert_bad_input(capsys, ["refine", p], "not UTF-8")
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(17 * 1024 * 1024)
    assert_bad_input(capsys, ["explore", "--config", big], "more than the limit")


# --- plain JSON traces (refine) --------------------------------------------------------------

def _plain(**over):
    d = {"policy": "native", "config": config_to_dict(ONE),
         "steps": [{"action": "submit", "slots": [0]}, {"action": "accept", "slots": [0]}]}
    d.update(over)
    return d


PLAIN_BAD = [
    ("usable_0", _plain(config={**config_to_dict(ONE), "usable": 0}), "at least 1 block"),
    ("mode_99", _plain(config={**config_to_dict(ONE), "claims": [
        {**config_to_dict(ONE)["claims"][0], "mode": 99}]}), "unknown protection mode"),
    ("policy_unknown", _plain(policy="strict"), "unknown policy"),
    ("steps_missing", {"policy": "native", "config": config_to_dict(ONE)}, "missing 'steps'"),
    ("steps_dict", _plain(steps={"a": 1}), "'steps' must be a list"),
    ("step_not_object", _plain(steps=[3]), "a step must be an object"),
    ("slot_7", _plain(steps=[{"action": "submit", "slots": [7]}]), "out of range"),
    ("slots_string", _plain(steps=[{"action": "submit", "slots": "0"}]), "'slots' must be a list"),
    ("two_slots", _plain(steps=[{"action": "submit", "slots": [0, 0]}]), "got 2"),
    ("unknown_action", _plain(steps=[{"action": "fly", "slots": [0]}]), "unknown action"),
    ("choice_unknown", _plain(steps=[{"action": "submit", "slots": [0], "choices": {"x": 1}}]),
     "has no choice"),
    ("choices_list", _plain(steps=[{"action": "admit", "slots": [0], "choices": [1]}]),
     "'choices' must be an object"),
    ("config_null", _plain(config=None), "must be a table/object"),
    ("need_1e9", _plain(config={**config_to_dict(ONE), "requests": [{"need": 10 ** 9}]}),
     "out of range 0..1000000"),
]


@pytest.mark.parametrize("name,doc,needle", PLAIN_BAD, ids=[c[0] for c in PLAIN_BAD])
def test_plain_trace(capsys, tmp_path, name, doc, needle):
    assert_bad_input(capsys, ["refine", _write(tmp_path, name, doc)], needle)


def test_plain_trace_in_config_to_dict_form_refines(capsys, tmp_path):
    """The form config_to_dict writes (modes by name) is read back by the same codec."""
    code, out, err = run(capsys, ["refine", _write(tmp_path, "ok", _plain())])
    assert code == 0 and "refines" in out, err


# --- explore --config ------------------------------------------------------------------------

CONFIG_BAD = [
    ("claims_null", {"usable": 4, "claims": None}, "'claims' must be a list"),
    ("usable_string", {"usable": "4"}, "'usable' must be an integer"),
    ("usable_bool", {"usable": True}, "'usable' must be an integer"),
    ("nine_claims", {"usable": 9, "claims": [{"footprint": 1}] * 9}, "limit of 8"),
    ("too_big_to_explore", {"usable": 1000, "claims": [], "requests": []}, "limited to 128"),
    ("request_unknown_field", {"usable": 4, "requests": [{"need": 1, "prio": 2}]},
     "unknown field(s) prio"),
    ("duration_negative", {"usable": 4, "claims": [{"footprint": 1, "duration": -1}]},
     "out of range"),
    ("cap_over_usable", {"usable": 4, "cap": 5}, "cap <= usable - headroom"),
]


@pytest.mark.parametrize("name,doc,needle", CONFIG_BAD, ids=[c[0] for c in CONFIG_BAD])
def test_explore_config(capsys, tmp_path, sentinel, name, doc, needle):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(doc))
    assert_bad_input(capsys, ["explore", "--config", p, "--json", sentinel, "--no-traces"],
                     needle)


def test_explore_config_toml(capsys, tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("usable = 4\nclaims = 3\n")
    assert_bad_input(capsys, ["explore", "--config", p], "'claims' must be a list")


# --- observe ---------------------------------------------------------------------------------

def _events(tmp_path):
    from kvclaims.model.claims import CacheIdentity, ClaimSpec, Predicate
    from kvclaims.model.runtime import MicroRuntime, synthetic_tokens
    ident = CacheIdentity()
    rt = MicroRuntime(9, "hard_refuse", protected_cap_blocks=8)
    rt.register_object("A", synthetic_tokens("A", 6), ident)
    rt.materialize("A")
    rt.submit_claim(ClaimSpec("claim-A", "t", ident, "A", Predicate(0, 6), 6, 0))
    p = tmp_path / "good.jsonl"
    dump_jsonl(rt.telemetry.events, str(p))
    return p.read_text().splitlines()


def _stored(lines):
    return next(n for n, line in enumerate(lines) if '"object_stored"' in line)


OBSERVE_BAD = [
    ("not_utf8", lambda ls: [*ls[:1], b"\xff\xfe".decode("latin-1")], ""),
    ("deep_line", lambda ls: ["[" * 100_000 + "]" * 100_000], "nested deeper"),
    ("blocks_1e12", lambda ls: [json.dumps({**json.loads(x), "blocks": 10 ** 12})
                                if n == _stored(ls) else x for n, x in enumerate(ls)],
     "beyond the limit"),
    ("not_object", lambda ls: ["[1]"], "must be a JSON object"),
    ("schema", lambda ls: ['{"type": "victim"}'], "not a telemetry event"),
    ("int_5000_digits", lambda ls: ['{"seq": ' + "9" * 5000 + "}"], "digits"),
    ("long_line", lambda ls: ['"' + "x" * (1024 * 1024 + 10) + '"'], "longer than"),
]


@pytest.mark.parametrize("name,mutate,needle", OBSERVE_BAD, ids=[c[0] for c in OBSERVE_BAD])
def test_observe(capsys, tmp_path, name, mutate, needle):
    p = tmp_path / f"{name}.jsonl"
    text = "\n".join(mutate(_events(tmp_path))) + "\n"
    p.write_bytes(text.encode("latin-1") if name == "not_utf8" else text.encode())
    if name == "not_utf8":
        needle = "not UTF-8"
    assert_bad_input(capsys, ["observe", p], needle)


def test_observe_many_stored_objects_is_bounded(capsys, tmp_path):
    lines = _events(tmp_path)
    ev = json.loads(lines[_stored(lines)])
    ev.pop("positions", None)      # residency from `blocks` alone: the whole prefix
    many = [json.dumps({**ev, "object_id": f"o{k}", "blocks": 1_000_000, "seq": k + 1})
            for k in range(3)]
    p = tmp_path / "many.jsonl"
    p.write_text("\n".join(many) + "\n")
    assert_bad_input(capsys, ["observe", p], "resident block positions")


# --- numeric options and output paths --------------------------------------------------------

OPTIONS_BAD = [
    (["check", "--timeout", "nan"], "out of range"),
    (["check", "--timeout", "inf"], "out of range"),
    (["check", "--timeout", "1e400"], "out of range"),
    (["check", "--jobs", str(10 ** 26)], "is not an integer"),
    (["check", "--jobs", "0"], "out of range"),
    (["check", "--depth", "1000000"], "out of range"),
    (["check", "--claims", "²"], "is not an integer"),
    (["explore", "--usable", "4", "--max-states", "-1"], "out of range"),
    (["explore", "--usable", "4", "--max-clock", str(10 ** 30)], "is not an integer"),
    (["explore", "--usable", "4", "--claim", "3:x"], "expected FOOTPRINT"),
    (["explore", "--usable", "4", "--claim", "9" * 30], "expected FOOTPRINT"),
    (["explore", "--usable", "4", "--claim", ":::::"], "expected FOOTPRINT"),
    (["explore"], "no configuration"),
    (["sweep", "--step", "0"], "out of range"),
    (["sweep", "--from", str(10 ** 30)], "is not an integer"),
    (["sweep", "--from", "100", "--to", "10"], "--from <= --to"),
    (["sweep", "--from", "1", "--to", "1000000", "--step", "1"], "limit of 10000"),
    (["sweep", "--policy", "nonesuch"], "unknown policy"),
    (["sweep", "--plot", "x.svg"], "expected a .png"),
    (["refine"], "give trace files"),
    (["refine", "--counterexample", "native:O99"], "unknown obligation"),
    (["refine", "--counterexample", "nonesuch:O3"], "unknown policy"),
    (["refine", "--target", "tpu", "x"], "invalid choice"),
    (["observe"], "required"),
    (["litmus", "--variant"], "expected one argument"),
    (["check", "--bogus"], "unrecognized arguments"),
    (["nonesuch"], "invalid choice"),
    (["--bogus"], "unrecognized arguments"),
]


@pytest.mark.parametrize("args,needle", OPTIONS_BAD, ids=[" ".join(a)[:40] for a, _ in
                                                           OPTIONS_BAD])
def test_options(capsys, args, needle):
    assert_bad_input(capsys, args, needle)


def _paths(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text(SENTINEL)
    adir = tmp_path / "adir"
    adir.mkdir()
    return {"FILE": afile, "DIR": adir, "UNDER_FILE": afile / "x" / "y.json",
            "PROC": Path("/proc/kvclaims-issue10/out.json")}


PATHS_BAD = [
    (["check", "--out", "FILE"], "is not a directory"),
    (["check", "--out", "UNDER_FILE"], "is not a directory"),
    (["check", "--out", "PROC"], "cannot write"),
    (["check", "--write-manifest", "--manifest", "DIR"], "is a directory"),
    (["explore", "--usable", "4", "--out", "FILE"], "is not a directory"),
    (["explore", "--usable", "4", "--no-traces", "--json", "DIR"], "is a directory"),
    (["explore", "--usable", "4", "--no-traces", "--json", "PROC"], "cannot write"),
    (["litmus", "--json", "DIR"], "is a directory"),
    (["litmus", "--json", "UNDER_FILE"], "is not a directory"),
    (["sweep", "--json", "DIR"], "is a directory"),
    (["sweep", "--plot", "UNDER_FILE.png"], "is not a directory"),
]


@pytest.mark.parametrize("args,needle", PATHS_BAD, ids=[" ".join(a)[:40] for a, _ in PATHS_BAD])
def test_output_paths_checked_before_work(capsys, tmp_path, args, needle):
    paths = _paths(tmp_path)
    args = [str(paths.get(a, a)) if a in paths else
            (str(paths["UNDER_FILE"]) + ".png" if a == "UNDER_FILE.png" else a) for a in args]
    assert_bad_input(capsys, args, needle)
    assert paths["FILE"].read_text() == SENTINEL


def test_outputs_written_atomically(capsys, tmp_path):
    """A successful run replaces the file whole; no temporary file is left beside it."""
    out = tmp_path / "res.json"
    out.write_text(SENTINEL)
    code, _, err = run(capsys, ["sweep", "--from", "60", "--to", "80", "--policy", "hard_refuse",
                                "--json", out])
    assert code == 0, err
    assert json.loads(out.read_text())[0]["usable"] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json"]


# --- the command itself ----------------------------------------------------------------------

def test_no_arguments_usage_on_stderr(capsys):
    code, out, err = run(capsys, [])
    assert code == 2 and out == "" and err.startswith("usage: kvclaims")
    assert len(err.strip().splitlines()) == 1


def test_help_lists_every_subcommand_and_every_option_has_help(capsys):
    from kvclaims.cli import SUBCOMMANDS
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name, (_, summary) in SUBCOMMANDS.items():
        assert name in out and summary.split()[0] in out
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        options = [line.split()[0] for line in text.splitlines()
                   if line.startswith("  -") and len(line.split()) == 1 + line.count(",")
                   and not line.rstrip().endswith(("]", "}"))]
        assert text.count("\n  -") >= 1
        bare = [o for o in options if o.startswith("--")
                and not _has_help(text, o)]
        assert not bare, f"{name}: options without help: {bare}"


def _has_help(text: str, option: str) -> bool:
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.strip().startswith(option):
            rest = line.strip()[len(option):].strip()
            nxt = lines[n + 1] if n + 1 < len(lines) else ""
            return bool(rest) or nxt.startswith(" " * 10)
    return False


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("kvclaims ")


def test_console_script_bad_input_one_line(tmp_path):
    """The installed entry point, in a fresh process: same contract."""
    p = tmp_path / "c.json"
    p.write_text('{"usable": 4, "claims": null}')
    r = subprocess.run([sys.executable, "-m", "kvclaims.cli", "explore", "--config", str(p)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# --- fuzz: random damage to a valid ITF trace ------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)


def _paths_of(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths_of(v, prefix + (k,))
    elif isinstance(doc, list):
        for n, v in enumerate(doc):
            yield from _paths_of(v, prefix + (n,))


def _fuzz_itf(itf_doc, data, tmp_path):
    d = copy.deepcopy(itf_doc)
    paths = [p for p in _paths_of(d) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        x = d
        try:
            for k in path[:-1]:
                x = x[k]
            x[path[-1]] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass        # an earlier damage removed the path: the document is damaged anyway
    p = tmp_path / "fuzz.itf.json"
    p.write_text(json.dumps(d))
    return p


def _check_fuzz_run(args):
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    text = err.getvalue()
    assert code in (0, 2, 12), f"{args}: exit {code}: {text[-800:]}"
    assert "Traceback" not in text
    if code == 2:
        assert len(text.strip().splitlines()) == 1, text


def _itf_case(itf_doc, data, tmp_path):
    p = _fuzz_itf(itf_doc, data, tmp_path)
    return [["explore", "--replay", p], ["refine", p]]


def _config_case(itf_doc, data, tmp_path):
    base = {"usable": 4, "cap": 3, "claims": [{"footprint": 3, "pred_len": 2}],
            "requests": [{"need": 3}]}
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(["usable", "cap", "claims", "requests", "extra"]))
        records = base.get(key)
        record = records[0] if isinstance(records, list) and records else None
        if isinstance(record, dict) and data.draw(st.booleans()):
            field = data.draw(st.sampled_from(["footprint", "pred_len", "mode", "need", "owner",
                                               "duration", "predicate"]))
            record[field] = data.draw(JSON_VALUES)
        else:
            base[key] = data.draw(JSON_VALUES)
    p = tmp_path / "fuzz.json"
    p.write_text(json.dumps(base))
    return [["explore", "--config", p, "--no-traces", "--policy", "hard_refuse",
             "--max-clock", "1", "--max-states", "2000"]]


def _damaged_bytes(data, original: bytes) -> bytes:
    """The original with a few byte-level edits: a replaced, inserted or deleted run."""
    b = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(b)))
        edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        run = data.draw(st.binary(min_size=1, max_size=4))
        if edit == "delete":
            del b[at:at + len(run)]
        elif edit == "insert":
            b[at:at] = run
        else:
            b[at:at + len(run)] = run
    return bytes(b)


def _litmus_case(itf_doc, data, tmp_path):
    p = tmp_path / "fuzz.toml"
    p.write_bytes(_damaged_bytes(data, L3.encode()))
    return [["litmus", p]]


_GOOD_TELEMETRY: list = []


def _observe_case(itf_doc, data, tmp_path):
    if not _GOOD_TELEMETRY:      # one run's events (ids and timestamps differ between runs)
        _GOOD_TELEMETRY.append(("\n".join(_events(tmp_path)) + "\n").encode())
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes(_damaged_bytes(data, _GOOD_TELEMETRY[0]))
    return [["observe", p]]


def _campaign(examples: int, case):
    """`examples` damaged inputs from `case`, each run through the CLI: exit 0, 12 or 2 (with
    one line), never a crash."""
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def campaign(itf_doc, tmp_path_factory, data):
        for args in case(itf_doc, data, tmp_path_factory.mktemp("fuzz")):
            _check_fuzz_run(args)
    return campaign


test_fuzz_itf = _campaign(30, _itf_case)
test_fuzz_explore_config = _campaign(30, _config_case)
test_fuzz_litmus_toml = _campaign(20, _litmus_case)
test_fuzz_observe_jsonl = _campaign(30, _observe_case)
# the long campaigns (pytest --slow): about 4,000 damaged inputs
test_fuzz_itf_long = pytest.mark.slow(_campaign(1200, _itf_case))
test_fuzz_explore_config_long = pytest.mark.slow(_campaign(1000, _config_case))
test_fuzz_litmus_toml_long = pytest.mark.slow(_campaign(600, _litmus_case))
test_fuzz_observe_jsonl_long = pytest.mark.slow(_campaign(1000, _observe_case))
