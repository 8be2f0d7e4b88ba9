"""``semsearch.cli.main``: exit codes and messages, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.index.folder import IndexFolder
from semsearch.cli import EXIT_DATA, EXIT_ERROR, main


@pytest.fixture
def bad_corpus(tmp_path: Path, tiny_docs) -> Path:
    lines = [json.dumps(d) for d in tiny_docs[:6]]
    lines.insert(2, '{"id": "oops", "text": ')  # line 3: invalid JSON
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def build_args(model: Path, corpus: Path, output: Path, *extra: str) -> list[str]:
    flags = ["--model", str(model), "--corpus", str(corpus), "--output", str(output)]
    return ["index", "build", *flags, "--no-progress", "--device", "cpu", *extra]


def test_build_bad_corpus_exits_2_with_file_and_line(
    tmp_path: Path, tiny_model_dir: Path, bad_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(build_args(tiny_model_dir, bad_corpus, out))
    captured = capsys.readouterr()
    assert code == EXIT_DATA == 2
    assert "bad.jsonl:3" in captured.err
    assert "invalid JSON" in captured.err
    assert "semsearch: error: " in captured.err
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_build_skip_bad_lines_succeeds_and_reports(
    tmp_path: Path, tiny_model_dir: Path, bad_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(build_args(tiny_model_dir, bad_corpus, out, "--skip-bad-lines"))
    captured = capsys.readouterr()
    assert code == 0
    assert "skipped 1 bad line(s)" in captured.err
    assert "bad.jsonl:3" in captured.err
    assert "indexed 6 documents" in captured.out
    assert "dim 32" in captured.out
    folder = IndexFolder.open(out)
    assert folder.count == 6
    folder.close()


def test_build_missing_model_exits_1(tmp_path: Path, bad_corpus: Path, capsys) -> None:
    code = main(build_args(tmp_path / "no-model", bad_corpus, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == EXIT_ERROR == 1
    assert "model folder not found" in err
    assert str(tmp_path / "no-model") in err


def test_build_missing_corpus_exits_2(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    code = main(build_args(tiny_model_dir, tmp_path / "absent.jsonl", tmp_path / "out"))
    assert code == EXIT_DATA
    assert "absent.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--help"], ["index", "build", "--help"], ["serve", "--help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: semsearch" in capsys.readouterr().out


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: semsearch" in capsys.readouterr().err


def test_build_requires_corpus_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["index", "build", "--model", "x"])
    assert info.value.code == 2
    assert "--corpus" in capsys.readouterr().err


def test_serve_missing_index_fails_cleanly(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    code = main(["serve", "--index", str(missing), "--model", str(tiny_model_dir), "--port", "0"])
    err = capsys.readouterr().err
    assert code != 0
    assert code == EXIT_ERROR
    assert "index folder not found" in err
    assert str(missing) in err
    assert "Traceback" not in err


def test_serve_without_index_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--port", "0"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "no index configured" in err


def test_eval_retrieval_prints_metrics_and_writes_json(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path, tiny_docs, capsys
) -> None:
    index = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "build",
                "--model",
                str(tiny_model_dir),
                "--corpus",
                str(tiny_corpus),
                "--output",
                str(index),
            ]
        )
        == 0
    )
    queries = tmp_path / "q.tsv"
    queries.write_text("".join(f"q{i}\t{d['text']}\n" for i, d in enumerate(tiny_docs[:5])))
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("".join(f"q{i} 0 {d['id']} 1\n" for i, d in enumerate(tiny_docs[:5])))
    out = tmp_path / "eval.json"
    argv = ["eval", "retrieval", "--index", str(index), "--queries", str(queries), "--qrels", str(qrels)]
    assert main([*argv, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    # No mode flag: what `semsearch serve` searches with by default (hybrid, with feedback).
    assert "hybrid: ndcg@10 1.0000" in printed and "5 judged queries" in printed
    assert json.loads(out.read_text())["per_query"]["q0"]["mrr@10"] == 1.0
    assert main([*argv, "--dense"]) == 0
    assert "dense: ndcg@10 1.0000" in capsys.readouterr().out
    assert main([*argv, "--hybrid", "--alpha", "0.5", "--feedback", "0"]) == 0
    assert main([*argv, "--hybrid", "--alpha", "2"]) != 0
    assert main([*argv, "--feedback", "-1"]) != 0


def test_train_mlm_needs_some_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "mlm", "--output", str(tmp_path / "out")]) == EXIT_ERROR
    assert "--corpus or --pairs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_train_mlm_bad_pair_file_names_the_file_and_line(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("one side\tother side\t1\nno tab on this line\n")
    argv = [
        "train",
        "mlm",
        "--model",
        str(tiny_model_dir),
        "--pairs",
        str(pairs),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(argv) == EXIT_DATA
    err = capsys.readouterr().err
    assert "pairs.tsv" in err and ":2" in err
