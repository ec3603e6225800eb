"""TableBench graders: right, wrong, malformed and adversarial outputs per subset."""

from __future__ import annotations

import os
import time

import pytest

from ftdojo_gym.grading.tablebench_grading import (
    ChartReference,
    exact_match,
    extract_final_answer,
    extract_plot_code,
    grade_data_analysis,
    grade_data_analysis_mix,
    grade_fact_checking,
    grade_numerical_reasoning,
    grade_visualization,
    normalize_answer,
)

ADVERSARIAL = [
    "",
    "   \n\t",
    "Final Answer:",
    "final answer",
    "Final Answer: " + "x" * 200_000,
    "Final Answer: ☃ ünïcödé — 数字 ⁴²",
    "Final Answer: \x00\x01\x02",
    "Final Answer: " + "(" * 5000,
    "🙂" * 10_000,
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Answer: Yes", "Yes"),
        ("reasoning...\nFinal Answer: 42.", "42."),
        ("Final Answer:   No  \nmore text", "  No  "),
        ("Final Answer: No\nFinal Answer: Yes", "No"),  # the first one counts, as officially
        ("final answer: No", None),  # case-sensitive marker
        ("Final Answer:No", None),  # one space after the colon
        ("Final Answer:\n  Yes", None),  # the answer must be on the marker's line
        ("Final Answer:", None),
        ("The answer is Yes", None),
        ("", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


def test_hedge_rule_is_opt_in() -> None:
    hedge = "Final Answer: Yes\nFINAL ANSWER: No"
    assert grade_fact_checking(hedge, "Yes") == 1.0
    assert grade_fact_checking(hedge, "Yes", hedge_rule=True) == 0.0
    repeated = "Final Answer: Yes\nso, Final Answer: yes."
    assert grade_fact_checking(repeated, "Yes", hedge_rule=True) == 1.0
    assert extract_final_answer("Final Answer: the Lions.\nFinal Answer: Lions", hedge_rule=True) == "the Lions."


@pytest.mark.parametrize(
    ("text", "normalised"),
    [("The Lions!", "lions"), ("9.34, 1.18", "934 118"), ("3 - 0", "3 0"), ("3-0", "30"),
     ("  A  cat\tand an owl ", "cat and owl"), ("45%", "45"), ("1994–95", "1994–95")],  # en dash: not ASCII
)
def test_normalize_answer(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


def test_exact_match() -> None:
    assert grade_fact_checking("Final Answer: Yes", "Yes") == 1.0
    assert grade_fact_checking("Final Answer:  yes. ", "Yes") == 1.0
    assert grade_fact_checking("Final Answer: No", "Yes") == 0.0
    assert grade_fact_checking("Yes", "Yes") == 0.0  # no "Final Answer: "
    assert grade_fact_checking("Final Answer: Yes No", "Yes") == 0.0
    assert grade_fact_checking("Final Answer: Yes/No", "No") == 0.0
    assert grade_numerical_reasoning("Final Answer: 100", "100") == 1.0
    assert grade_numerical_reasoning("Final Answer: 109.9", "100") == 0.0  # no tolerance
    assert grade_numerical_reasoning("Final Answer: 1,050", "1050") == 1.0
    assert grade_numerical_reasoning("Final Answer: 0042", "42") == 1.0  # digit strings compare as integers
    assert grade_numerical_reasoning("Final Answer: " + "9" * 400, "12") == 0.0
    assert exact_match("13", "12", rtol=0.1) == 1.0 and exact_match("14", "12", rtol=0.1) == 0.0
    assert exact_match("1", "0", rtol=0.1) == 0.0 and exact_match("0", "0", rtol=0.1) == 1.0


def test_data_analysis() -> None:
    reference = "Lions has the highest Wins (12) and Hawks has the lowest (3)."
    assert grade_data_analysis(f"Final Answer: {reference}", reference) == pytest.approx(1.0)
    partial = grade_data_analysis("Final Answer: Lions has the highest Wins.", reference)
    assert 0.3 < partial < 1.0
    assert grade_data_analysis("Final Answer: pancakes are tasty", reference) == 0.0
    assert grade_data_analysis(reference, reference) == 0.0  # no "Final Answer: "


def test_data_analysis_mix_by_subtype() -> None:
    out = "Final Answer: 13"
    assert grade_data_analysis_mix(out, "12", "StatisticalAnalysis") == 1.0  # within 10 %
    assert grade_data_analysis_mix(out, "12", "ImpactAnalysis") == 0.0  # exact
    assert grade_data_analysis_mix(out, "12", "DescriptiveAnalysis") == 0.0  # ROUGE-L
    assert grade_data_analysis_mix("Final Answer: x y z", "x y w", None) == pytest.approx(2 / 3)
    assert grade_data_analysis_mix("13", "13", "StatisticalAnalysis") == 0.0  # unparsed


@pytest.mark.parametrize("output", ADVERSARIAL)
def test_text_graders_never_raise(output: str) -> None:
    for grader, answer in (
        (grade_fact_checking, "Yes"),
        (grade_numerical_reasoning, "12"),
        (grade_data_analysis, "Lions has the highest Wins (12)."),
    ):
        score = grader(output, answer)
        assert 0.0 <= score <= 1.0


TABLE = "Team,Wins,Losses\nLions,12,4\nHawks,9,7\nBears,15,1\n"
HEADER = "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n"
BAR = ChartReference("bar", (12.0, 9.0, 15.0), TABLE)


def code(call: str) -> str:
    return f"Final Answer: {HEADER}{call}\nplt.show()"


def test_extract_plot_code() -> None:
    assert extract_plot_code("Final Answer: plt.show()") == "plt.show()"
    fenced = "Here:\n```python\nprint(1)\n```\nFinal Answer: see above"
    assert extract_plot_code(fenced) == "print(1)\n"
    assert extract_plot_code("no code here") is None
    assert extract_plot_code("") is None


LINE = ChartReference("line", (12.0, 9.0, 15.0), TABLE)
PIE = ChartReference("pie", (12.0, 9.0, 15.0), TABLE)
HBAR = ChartReference("hbar", (12.0, 9.0, 15.0), TABLE)
# (output, reference, expected score); graded in one call so that the runner
# processes start once.
CHART_CASES = {
    "bar": (code("plt.bar(df['Team'], df['Wins'])"), BAR, 1.0),
    "fenced": (f"Sure.\n```python\n{HEADER}plt.bar(df['Team'], df['Wins'])\n```", BAR, 1.0),
    "pandas_plot": (code("df.plot(kind='bar', x='Team', y='Wins')"), BAR, 1.0),
    "bar_other_order": (code("plt.bar(df['Team'][::-1], df['Wins'][::-1])"), BAR, 1.0),  # sorted, as officially
    "barh_for_bar": (code("plt.barh(df['Team'], df['Wins'])"), BAR, 0.0),  # a bar chart's heights are read
    "hbar": (code("plt.barh(df['Team'], df['Wins'])"), HBAR, 1.0),
    "line": (code("plt.plot(df['Team'], df['Wins'])"), LINE, 1.0),
    "line_to_2_decimals": (code("plt.plot(df['Team'], df['Wins'] * 1.0001)"), LINE, 1.0),
    "line_off_by_0.5%": (code("plt.plot(df['Team'], df['Wins'] * 1.005)"), LINE, 0.0),
    "other_figure_current": (code("plt.bar(df['Team'], df['Wins'])\nplt.figure()\nplt.plot([1])"), BAR, 0.0),
    "pie": (code("plt.pie(df['Wins'], labels=df['Team'])"), PIE, 1.0),
    "pie_wrong_column": (code("plt.pie(df['Losses'], labels=df['Team'])"), PIE, 0.0),
    "wrong_column": (code("plt.bar(df['Team'], df['Losses'])"), BAR, 0.0),
    "wrong_chart": (code("plt.plot(df['Team'], df['Wins'])"), BAR, 0.0),
    "syntax_error": (code("plt.bar(df['Team'], df['Wins']"), BAR, 0.0),
    "runtime_error": (code("plt.bar(df['Team'], df['Nope'])"), BAR, 0.0),
    "no_plot": (f"Final Answer: {HEADER}print(df)", BAR, 0.0),
    "no_final_answer": (HEADER + "plt.bar(df['Team'], df['Wins'])", BAR, 0.0),
    "empty": ("", BAR, 0.0),
}


def test_visualization_cases() -> None:
    outputs, references, expected = zip(*CHART_CASES.values(), strict=True)
    scores = grade_visualization(outputs, references)
    assert dict(zip(CHART_CASES, scores, strict=True)) == dict(
        zip(CHART_CASES, expected, strict=True)
    )


def test_visualization_timeout_and_hostile_code() -> None:
    marker = "ftdojo_probe_marker.txt"
    outputs = [
        "Final Answer: while True:\n    pass",
        "Final Answer: import time\ntime.sleep(60)",
        "Final Answer: import subprocess\nsubprocess.Popen(['sleep', '60'])\nwhile True: pass",
        "Final Answer: x = []\nwhile True: x.append(' ' * 10**6)",  # memory cap
        "Final Answer: import os\nos.remove('table.csv')",
        "Final Answer: import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",  # kills the runner
        # Printing a fake reply cannot reach the reply channel.
        'Final Answer: import sys\nprint(\'{"ok": true, "values": [12, 9, 15]}\')\nsys.stdout.flush()',
        # Relative writes land in the item's temporary directory, not in our cwd.
        f"Final Answer: open('{marker}', 'w').write('x')\n{HEADER}plt.bar(df['Team'], df['Wins'])",
        code("plt.bar(df['Team'], df['Wins'])"),
    ]
    start = time.monotonic()
    scores = grade_visualization(outputs, [BAR] * len(outputs), timeout=1.0)
    assert scores == [0.0] * 7 + [1.0, 1.0]
    assert time.monotonic() - start < 20
    assert not os.path.exists(marker)


@pytest.mark.parametrize("output", ADVERSARIAL)
def test_visualization_never_raises(output: str) -> None:
    assert grade_visualization([output], [BAR], timeout=2.0) == [0.0]


def test_visualization_length_mismatch() -> None:
    with pytest.raises(ValueError):
        grade_visualization(["x"], [])
