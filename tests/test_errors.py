"""Bad input fails with a clear error that names the thing and what was expected; nothing half-written remains."""

import copy

import pytest
import yaml

from conftest import load_raw_params
from xstilts.cli import main
from xstilts.config import load_params
from xstilts.data import readers
from xstilts.data.prepare import load_split, prepare_task
from xstilts.errors import ConfigError, DataFormatError, XstiltsError
from xstilts.tasks.registry import get_task


def write_params(tmp_path, mutate):
    raw = copy.deepcopy(load_raw_params())
    mutate(raw)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return p


def test_unknown_params_key_names_key_and_allowed(tmp_path):
    p = write_params(tmp_path, lambda r: r["profiles"]["mini"]["caps"].update(trian=5))
    with pytest.raises(ConfigError) as e:
        load_params(p)
    msg = str(e.value)
    assert "profiles.mini.caps.trian" in msg and "unknown key" in msg and "train, dev, test" in msg


def test_bad_value_names_key_and_value(tmp_path):
    p = write_params(tmp_path, lambda r: r["profiles"]["mini"]["caps"].update(train=-3))
    with pytest.raises(ConfigError, match=r"profiles\.mini\.caps\.train: .*greater than or equal to 1.*-3"):
        load_params(p)
    p = write_params(tmp_path, lambda r: r["profiles"]["mini"].update(data_source="ftp"))
    with pytest.raises(ConfigError, match=r"data_source.*'local' or 'hub'.*ftp"):
        load_params(p)


def test_unknown_profile_and_task(tmp_path):
    with pytest.raises(ConfigError, match=r"profile 'tiny' is not defined; expected one of: mini, paper, smoke"):
        load_params(write_params(tmp_path, lambda r: None), profile="tiny")
    p = write_params(tmp_path, lambda r: r["tasks"].append("xnlii"))
    with pytest.raises(ConfigError, match=r"unknown task 'xnlii'.*expected one of: .*xnli"):
        load_params(p)
    with pytest.raises(XstiltsError, match=r"unknown task 'posud'; expected one of: .*udpos"):
        get_task("posud")


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    p = write_params(tmp_path, lambda r: r["profiles"]["mini"].update(bogus=1))
    assert main(["--params", str(p), "params"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xstilts: error:") and "profiles.mini.bogus: unknown key" in err
    assert "Traceback" not in err


def test_malformed_lines_name_file_and_line(tmp_path):
    f = tmp_path / "train-en.tsv"
    f.write_text("Paris\tB-LOC\nis\tO\n\nbroken line without tag\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"train-en\.tsv:4: expected 'token<TAB>tag'.*broken line"):
        list(readers.conll(f))
    f = tmp_path / "dev-en.tsv"
    f.write_text("a\tb\tneutral\r\nonly two\tfields\r\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dev-en\.tsv:2: expected 3 tab-separated fields"):
        list(readers.tsv(f, columns=["text_a", "text_b", "label"], csv_quoting=True))
    f = tmp_path / "q.json"
    f.write_text('{"data": [{"paragraphs": [{"context": "abc def", "qas": [{"id": "1", "question": "?", '
                 '"answers": [{"text": "def", "answer_start": 0}]}]}]}]}', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"q\.json:1: expected answer_start pointing at the answer"):
        list(readers.squad(f))


def test_wrong_label_in_data_names_file_line_and_allowed(tmp_path, make_params):
    root = tmp_path / "root"
    (root / "xnli").mkdir(parents=True)
    (root / "xnli" / "test-de.tsv").write_text("p\th\tentailment\r\np\th\tmaybe\r\n", encoding="utf-8")
    (root / "xnli" / "dev-en.tsv").write_text("p\th\tentailment\r\n", encoding="utf-8")
    params = make_params("smoke", languages={"xnli": ["de"]})
    params = params.model_copy(update={"data": params.data.model_copy(update={"root": str(root)})})
    with pytest.raises(DataFormatError, match=r"xnli/test-de\.tsv:2: expected a label in \['contradiction', "
                                              r"'entailment', 'neutral'\], got 'maybe'"):
        prepare_task("xnli", params)
    # the failed run left no prepared folder behind, and no counts
    from pathlib import Path

    assert not (Path(params.data.prepared_dir) / "xnli").exists()
    assert not list(Path(params.data.prepared_dir).glob("xnli*"))
    assert not (Path(params.data.counts_dir) / "xnli.json").exists()


def test_failed_rerun_keeps_the_previous_output(tmp_path, make_params):
    from pathlib import Path

    good = make_params("smoke")
    prepare_task("sick", good)
    before = (Path(good.data.prepared_dir) / "sick" / "train" / "en.jsonl").read_text()
    broken = good.model_copy(update={"data": good.data.model_copy(update={"root": str(tmp_path / "empty")})})
    (tmp_path / "empty").mkdir()
    with pytest.raises(XstiltsError, match=r"file not found: .*SICK_train\.txt"):
        prepare_task("sick", broken)
    assert (Path(good.data.prepared_dir) / "sick" / "train" / "en.jsonl").read_text() == before


def test_unknown_language(make_params):
    params = make_params("smoke", languages={"panx": ["de", "xx"]})
    with pytest.raises(XstiltsError, match=r"unknown language for task 'panx' 'xx'; expected one of: ar, de, el"):
        prepare_task("panx", params)
    params = make_params("smoke")
    prepare_task("sick", params)
    with pytest.raises(XstiltsError, match=r"unknown language for 'sick' split 'test' 'de'; expected one of: en"):
        load_split(params.data.prepared_dir, "sick", "test", "de")
    with pytest.raises(XstiltsError, match=r"task 'panx' is not prepared"):
        load_split(params.data.prepared_dir, "panx", "test", "de")


def test_missing_data_root(make_params, tmp_path):
    params = make_params("smoke")
    params = params.model_copy(update={"data": params.data.model_copy(update={"root": str(tmp_path / "nowhere")})})
    with pytest.raises(XstiltsError, match=r"data root .*nowhere does not exist; unpack the bundle"):
        prepare_task("xnli", params)


def test_bundle_checksum_mismatch_is_refused(tmp_path):
    from xstilts.data.bundle import unpack

    bundle = tmp_path / "xtreme-mini.tar.gz"
    bundle.write_bytes(b"not a tarball")
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  xtreme-mini.tar.gz\n")
    with pytest.raises(XstiltsError, match="does not match SHA256SUMS"):
        unpack(bundle, tmp_path / "root")
    assert not (tmp_path / "root").exists()
