from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import DataError
from training.data import build_label_map, detect_format, encode_labels, read_pairs

BOM = "\ufeff"


def test_stsb_rows_with_raw_quotes_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "sts-dev.csv"
    path.write_text(
        'main-captions\tMSRvid\t2012test\t0001\t5.000\tA "quoted" man.\tA man "quoted".\n'
        "main-news\theadlines\t2013\t0002\t2.5\tOne.\tTwo.\textra\tcolumns\n",
        encoding="utf-8",
    )
    rows = read_pairs(path)
    assert detect_format(path) == "stsb"
    assert [(r.s1, r.s2, r.score) for r in rows] == [
        ('A "quoted" man.', 'A man "quoted".', 1.0),
        ("One.", "Two.", 0.5),
    ]


def test_sick_split_filter_crlf_and_scaling(tmp_path: Path) -> None:
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
    lines = [
        header,
        "1\tA dog runs\tA dog moves\tENTAILMENT\t5.0\tTRAIN",
        "2\tA cat\tA car\tNEUTRAL\t1.0\tTEST",
    ]
    path = tmp_path / "SICK.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    train = read_pairs(path, split="TRAIN")
    assert len(train) == 1
    assert (train[0].s1, train[0].label, train[0].score) == ("A dog runs", "entailment", 1.0)
    assert read_pairs(path, split="TEST")[0].score == 0.0
    with pytest.raises(DataError, match="unknown SICK split"):
        read_pairs(path, split="DEV")


def test_snli_line_files_strip_tokenised_trailing_space(tmp_path: Path) -> None:
    (tmp_path / "s1.dev").write_text("Two women are embracing . \nA man sleeps . \n")
    (tmp_path / "s2.dev").write_text("The sisters hug . \nA man is awake . \n")
    (tmp_path / "labels.dev").write_text("entailment\ncontradiction\n")
    rows = read_pairs(tmp_path / "s1.dev")
    assert [(r.s1, r.s2, r.label) for r in rows] == [
        ("Two women are embracing .", "The sisters hug .", "entailment"),
        ("A man sleeps .", "A man is awake .", "contradiction"),
    ]


def test_lcqmc_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "dev.txt"
    path.write_text(
        BOM + "开初婚未育证明怎么弄？\t初婚未育情况证明怎么开？\t1\n谁知道她是网络美女吗？\t爱情这杯酒\t0\n",
        encoding="utf-8",
    )
    rows = read_pairs(path)
    assert detect_format(path) == "lcqmc"
    assert rows[0].s1 == "开初婚未育证明怎么弄？" and rows[0].label == "1" and rows[1].label == "0"
    assert build_label_map(rows) == {"0": 0, "1": 1}


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_generic_pairs_delimited_with_bom(tmp_path: Path, suffix: str) -> None:
    sep = "\t" if suffix == ".tsv" else ","
    path = tmp_path / f"pairs{suffix}"
    path.write_text(
        BOM + sep.join(["sentence1", "sentence2", "label"]) + "\n" + sep.join(["a b", "c d", "yes"]) + "\n"
    )
    rows = read_pairs(path)
    assert (rows[0].s1, rows[0].s2, rows[0].label) == ("a b", "c d", "yes")


def test_generic_pairs_jsonl_scores(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 0.25}\n\n'
        '{"sentence1": "c", "sentence2": "d", "score": "1"}\n'
    )
    assert [r.score for r in read_pairs(path)] == [0.25, 1.0]


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "label": "x"}\n'
        '{"sentence1": "a"\n'
        '{"sentence1": "", "sentence2": "b", "label": "x"}\n'
    )
    with pytest.raises(DataError) as info:
        read_pairs(path)
    assert f"{path}:2" in str(info.value)
    skipped: list[DataError] = []
    rows = read_pairs(path, skip_bad_lines=True, skipped=skipped)
    assert len(rows) == 1
    assert [e.line for e in skipped] == [2, 3]


def test_stsb_bad_score_names_line(tmp_path: Path) -> None:
    path = tmp_path / "sts.csv"
    path.write_text("g\tf\ty\t1\t3.0\ta\tb\ng\tf\ty\t2\tnope\ta\tb\n")
    with pytest.raises(DataError, match=r"sts\.csv:2: score 'nope'"):
        read_pairs(path, "stsb")


def test_label_map_names_sorted_and_unknown_label_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        "".join(
            f'{{"sentence1": "a", "sentence2": "b", "label": "{lab}"}}\n'
            for lab in ["neutral", "entailment", "contradiction"]
        )
    )
    rows = read_pairs(path)
    label_map = build_label_map(rows)
    assert label_map == {"contradiction": 0, "entailment": 1, "neutral": 2}
    rows[0].label = "other"
    with pytest.raises(DataError, match="not in the label map"):
        encode_labels(rows, label_map)


def test_mrpc_reader(tmp_path: Path) -> None:
    path = tmp_path / "msr-para-train.tsv"
    path.write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "yes".\tHe agreed.\n'
        "0\t3\t4\tThe sky is blue.\tStocks fell.\n"
        "7\t5\t6\tbad\tlabel\n",
        encoding="utf-8",
    )
    skipped: list[DataError] = []
    rows = read_pairs(path, skip_bad_lines=True, skipped=skipped)
    assert [(r.s1, r.s2, r.label, r.line) for r in rows] == [
        ('He said "yes".', "He agreed.", "1", 2),
        ("The sky is blue.", "Stocks fell.", "0", 3),
    ]
    assert len(skipped) == 1 and ":4:" in str(skipped[0])


# Real MSR Paraphrase Corpus pairs (msr-para-test.tsv, lines 20, 23, 34 and 39), embedded verbatim:
# sentences open with quote marks, some never close them.
MRPC_QUOTED = [
    (
        "\"I'm delighted that David Chase has decided to give us another chapter in the great 'Sopranos' "
        'saga," HBO chairman and chief executive Chris Albrecht said.',
        "\"I'm delighted that David Chase has decided to give us another chapter in the great Sopranos "
        'saga," said HBO Chairman Chris Albrecht in a statement.',
        "1",
    ),
    (
        "Still, he said, \"I'm absolutely confident we're going to have a bill.\"",
        "\"I'm absolutely confident we're going to have a bill,\" Frist, R-Tenn., said Thursday.",
        "1",
    ),
    (
        '"It was a little bit embarrassing the way we played in the first two games," Thomas said.',
        "\"We're in the Stanley Cup finals, and it was a little bit embarrassing the way we played in the "
        "first two games.",
        "0",
    ),
    (
        'In a statement, Mr. Rowland said: "As is the case with all appointees, Commissioner Anson is '
        "accountable to me.",
        '"As is the case with all appointees, Commissioner Anson is accountable to me," Rowland said.',
        "1",
    ),
]


def test_generic_pairs_tsv_keeps_quote_marks_one_pair_per_line(tmp_path: Path) -> None:
    """A .tsv pairs file has no quoting: quote marks are text, and an unclosed one does not run on
    into the next fields and lines."""
    path = tmp_path / "pairs.tsv"
    lines = ["sentence1\tsentence2\tlabel", *("\t".join(pair) for pair in MRPC_QUOTED)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    assert detect_format(path) == "pairs"
    rows = read_pairs(path)
    assert len(rows) == len(MRPC_QUOTED)
    assert [(r.s1, r.s2, r.label, r.line) for r in rows] == [
        (s1, s2, label, line) for line, (s1, s2, label) in enumerate(MRPC_QUOTED, start=2)
    ]


def test_paws_x_chinese_pairs_tsv_keeps_quote_marks(tmp_path: Path) -> None:
    """A real PAWS-X (Chinese) dev line whose first sentence opens with a quote mark."""
    s1 = '"Ras" Abbi Addi 前进至卡萨岛，与中心的"Ras" Seyoum 汇合。'
    s2 = "“拉斯”艾比·阿迪前进到了卡萨并与“拉斯”塞尤姆在中心汇合。"
    path = tmp_path / "dev_2k.tsv"
    path.write_text(f"id\tsentence1\tsentence2\tlabel\n6715\t{s1}\t{s2}\t1\n", encoding="utf-8")
    rows = read_pairs(path)
    assert [(r.s1, r.s2, r.label, r.line) for r in rows] == [(s1, s2, "1", 2)]


def test_chinese_nli_sets_with_text_labels_are_detected(tmp_path: Path) -> None:
    """Real first lines of Chinese-SNLI dev, OCNLI dev and CINLID (s1<TAB>s2<TAB>text label)."""
    path = tmp_path / "dev.txt"
    path.write_text(
        "在白云的蓝天下，一个孩子伸手摸着停在草地上的一架飞机的螺旋桨。\t一个孩子在玩球。\tcontradiction\n"
        "身上裹一件工厂发的棉大衣,手插在袖筒里\t身上至少一件衣服\tentailment\n"
        "孤军作战\t孤军深入\tentailment\n",
        encoding="utf-8",
    )
    assert detect_format(path) == "lcqmc"
    rows = read_pairs(path)
    assert [r.label for r in rows] == ["contradiction", "entailment", "entailment"]
    assert rows[2].s1 == "孤军作战" and rows[2].s2 == "孤军深入"


def test_atec_raw_rows_with_an_id_column_and_a_bom_inside_the_first_field(tmp_path: Path) -> None:
    """ATEC's raw release: id<TAB>s1<TAB>s2<TAB>label, CRLF, a BOM before the file and another
    before the first sentence (its real first two lines)."""
    path = tmp_path / "atec_nlp_sim_train.csv"
    path.write_bytes(
        "\ufeff1\t\ufeff怎么更改花呗手机号码\t我的花呗是以前的手机号码，怎么更改成现在的支付宝的号码手机号\t1\r\n"
        "2\t也开不了花呗，就这样了？完事了\t真的嘛？就是花呗付款\t0\r\n".encode()
    )
    assert detect_format(path) == "lcqmc"
    rows = read_pairs(path)
    assert rows[0].s1 == "怎么更改花呗手机号码" and rows[0].label == "1"
    assert rows[1].s2 == "真的嘛？就是花呗付款" and rows[1].label == "0" and rows[1].line == 2
