"""The questions the board's page answers under its tables, each written from the finished rows it names.

A question of the specification (``questions:``) is one of three kinds:

- ``versus``: does each model beat a baseline on each data set (mean per-user difference of test Recall@20,
  Wilcoxon p, ``dglmm compare``);
- ``standing``: each model's rank on each data set and its tests against LightGCN and MF;
- ``claims``: a paper's ordering of models (better first, by the paper's Recall@20: the paper's claim, not a
  number measured here) against the board's on every data set where two or more of its models finished.

Every answer quotes the table rows it rests on; a row that has not finished is named as pending; a row whose seed
runs the epoch cap ended before early stopping was due is said so.  A question's optional ``note`` (text of the
specification: context that the tables cannot show, e.g. how a paper trains the model) is printed under its answer.
"""

from __future__ import annotations

from typing import Any

from dglmm.compare import compare_sides, load_side

ALPHA = 0.05
TESTED = ("recall@20",)


def answer(question: dict, sections: dict[str, dict]) -> list[str]:
    """The markdown of one question: its heading, its paragraph, the rows it rests on.  ``sections``: data set
    key -> {"title", "entries", "cap"} (the page's rows, ranked, pending ones after; the epoch cap)."""
    kind = next(k for k in ("versus", "standing", "claims") if k in question)
    lines = ["", f"### {question['ask']}", ""]
    if kind == "versus":
        lines += _versus(question["versus"], sections)
    elif kind == "standing":
        lines += _standing(question["standing"], sections)
    else:
        lines += _claims(question["claims"], question.get("datasets"), sections)
    return lines + (["", f"Note (the specification's, not measured): {question['note']}"] if question.get("note")
                    else [])


def difference(a: dict, b: dict) -> tuple[float, float]:
    """Mean per-user difference of test Recall@20 (``a`` minus ``b``, each averaged over its seeds) and its
    two-sided Wilcoxon signed-rank p."""
    comparison = compare_sides(load_side(b["seeds"], TESTED), load_side(a["seeds"], TESTED), TESTED)[0]
    return comparison.diff, comparison.p_wilcoxon


def verdict(diff: float, p: float, above: str, below: str) -> str:
    """``above`` beats ``below`` / is below it / the two are not separated (p >= 0.05)."""
    if p >= ALPHA or diff == 0:
        return f"{above} and {below} are not separated"
    return f"{above} beats {below}" if diff > 0 else f"{above} is below {below}"


def _find(entries: list[dict], model: str) -> dict | None:
    """The model's row: its own row, else its variant's (e.g. SLIF-MR w/o KG on TikTok)."""
    rows = [e for e in entries if e["row"].model == model]
    return next((e for e in rows if not e["row"].variant), rows[0] if rows else None)


def _rank(entries: list[dict], entry: dict) -> str:
    done = [e for e in entries if e["status"] == "done"]
    return f"{done.index(entry) + 1} of {len(done)}"


def _r20(entry: dict) -> str:
    test = entry["test"]["recall@20"]
    return f"{test['mean']:.4f} ± {test['std']:.4f}"


def best_epochs_cell(entry: dict) -> str:
    """The seeds' selected epochs, ``‡`` when the epoch cap ended one of the seed runs before early stopping
    was due (:func:`dglmm.leaderboard.page.ended_by_cap`)."""
    return ", ".join(map(str, entry["best_epochs"])) + (" ‡" if entry["cap_ended"] else "")


def _cap_clause(entries: list[dict], cap: int) -> str:
    """``; seed runs ended by the 30-epoch cap, not by early stopping: kgat 3 of 3, mf 2 of 3`` (empty when
    none of ``entries`` has one)."""
    counts = [f"{e['row'].label} {e['cap_ended']} of {e['n_seeds']}" for e in entries if e["cap_ended"]]
    return f"; seed runs ended by the {cap}-epoch cap, not by early stopping: {', '.join(counts)}" if counts else ""


def _row_line(section: dict, entry: dict, versus: dict[str, dict | None]) -> str:
    entries = section["entries"]
    cells = [section["title"], entry["row"].label, _rank(entries, entry), _r20(entry),
             best_epochs_cell(entry)]
    for baseline in versus.values():
        if baseline is None or baseline["status"] != "done" or baseline is entry:
            cells.append("")
        else:
            diff, p = difference(entry, baseline)
            cells.append(f"{diff:+.4f} (p {p:.2g})")
    return "| " + " | ".join(cells) + " |"


def _rows_table(lines: list[str], baselines: tuple[str, ...]) -> list[str]:
    if not lines:
        return []
    head = ["data set", "model", "rank", "test Recall@20", "best epochs", *(f"vs {b}" for b in baselines)]
    return ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines]


def _named_rows(spec: dict, sections: dict[str, dict]):
    """(section, row) of each model the question names on each data set it names that has the model."""
    for key in spec["datasets"]:
        section = sections.get(key)
        for model in spec["models"] if section is not None else ():
            entry = _find(section["entries"], model)
            if entry is not None:
                yield section, entry


def _versus(spec: dict, sections: dict[str, dict]) -> list[str]:
    name = spec["baseline"]
    sentences, rows, pending, winners = [], [], [], []
    for section, entry in _named_rows(spec, sections):
        title, baseline = section["title"], _find(section["entries"], name)
        if entry["status"] != "done" or baseline is None or baseline["status"] != "done":
            pending.append(f"{(entry if entry['status'] != 'done' else baseline)['row'].label} on {title}")
            continue
        diff, p = difference(entry, baseline)
        winners += [f"{entry['row'].label} on {title}"] if p < ALPHA and diff > 0 else []
        sentences.append(f"on {title}, {verdict(diff, p, entry['row'].label, name)} "
                         f"({diff:+.4f} test Recall@20 per user, p {p:.2g}{_cap_clause([entry, baseline], section['cap'])})")
        rows += [_row_line(section, entry, {name: baseline}), _row_line(section, baseline, {name: baseline})]
    lead = ""
    if sentences and not pending:
        lead = (f"Yes: {', '.join(winners)} significantly above {name}. " if winners
                else f"No: no row significantly above {name}. ")
    text = _paragraph(sentences, pending)
    return [lead + text[0]] + _rows_table(list(dict.fromkeys(rows)), (name,))


def _standing(spec: dict, sections: dict[str, dict]) -> list[str]:
    sentences, rows, pending = [], [], []
    for section, entry in _named_rows(spec, sections):
        title, label = section["title"], entry["row"].label
        if entry["status"] != "done":
            pending.append(f"{label} on {title}")
            continue
        baselines = {b: _find(section["entries"], b) for b in ("lightgcn", "mf")}
        done = [e for e in section["entries"] if e["status"] == "done"]
        above = [e["row"].label for e in done[:done.index(entry)]]
        tests = [verdict(*difference(entry, b), label, b_name)
                 for b_name, b in baselines.items() if b is not None and b["status"] == "done" and b is not entry]
        sentences.append(f"on {title}, {label} ranks {_rank(section['entries'], entry)} by mean test Recall@20"
                         + (f" (above it: {', '.join(above)})" if above else "")
                         + (f"; {'; '.join(tests)}" if tests else "") + _cap_clause([entry], section["cap"]))
        rows.append(_row_line(section, entry, baselines))
    return _paragraph(sentences, pending) + _rows_table(rows, ("lightgcn", "mf"))


def _claims(claims: list[dict], datasets: list[str] | None, sections: dict[str, dict]) -> list[str]:
    lines = []
    for claim in claims:
        order = claim["order"]
        lines.append(f"- **{claim['paper']}** (the paper's ordering, better first: {' > '.join(order)}):")
        for key, section in sections.items():
            if datasets and key not in datasets:
                continue
            found = [(m, _find(section["entries"], m)) for m in order]
            done = [(m, e) for m, e in found if e is not None and e["status"] == "done"]
            waiting = [e["row"].label for _, e in found if e is not None and e["status"] != "done"]
            if len(done) < 2:
                if waiting:
                    lines.append(f"  - {section['title']}: pending ({', '.join(waiting)})")
                continue
            lines.append(f"  - {section['title']}: {_agreement(done)}"
                         + (f"; pending: {', '.join(waiting)}" if waiting else ""))
    return lines


def _agreement(done: list[tuple[str, dict]]) -> str:
    """Pairs of models in the paper's order, reversed (each significantly) or not separated; Kendall's tau."""
    from dglmm.report import ordering_agreement

    agree, reversed_, tied = 0, [], 0
    for i, (_, upper) in enumerate(done):
        for _, lower in done[i + 1:]:
            diff, p = difference(upper, lower)
            if p >= ALPHA or diff == 0:
                tied += 1
            elif diff > 0:
                agree += 1
            else:
                reversed_.append(f"{lower['row'].label} > {upper['row'].label} ({-diff:+.4f}, p {p:.2g})")
    n = len(done) * (len(done) - 1) // 2
    labels = [e["row"].label for _, e in done]
    ours = [e["test"]["recall@20"]["mean"] for _, e in done]
    paper = [float(len(done) - i) for i in range(len(done))]
    summary = ordering_agreement(labels, ours, paper, "mean test Recall@20")
    return (f"{agree} of {n} pairs significantly in the paper's order, {len(reversed_)} significantly reversed"
            + (f" ({'; '.join(reversed_)})" if reversed_ else "") + f", {tied} not separated (p >= {ALPHA}); "
            + summary.replace("the paper's", "the paper's ordering", 1))


def _paragraph(sentences: list[str], pending: list[str]) -> list[str]:
    text = " ".join(f"{s[:1].upper()}{s[1:]}." for s in sentences)
    if pending:
        text += (" " if text else "") + f"Pending: {', '.join(dict.fromkeys(pending))}."
    return [text or "No row of this question is on the board."]


def check_questions(path: Any, questions: Any, datasets: list[str]) -> list[dict]:
    """The specification's ``questions``, checked against its data sets: every problem is one
    :class:`InputError` naming the file."""
    from dglmm.errors import InputError

    if questions is None:
        return []
    if not isinstance(questions, list):
        raise InputError(f"{path}: questions must be a list of {{ask, versus|standing|claims}}")
    for i, q in enumerate(questions):
        kinds = [k for k in ("versus", "standing", "claims") if isinstance(q, dict) and k in q]
        if not isinstance(q, dict) or "ask" not in q or len(kinds) != 1:
            raise InputError(f"{path}: questions[{i}] needs ask and exactly one of versus, standing, claims")
        body = q[kinds[0]]
        need = {"versus": ("models", "baseline", "datasets"), "standing": ("models", "datasets")}.get(kinds[0])
        if need and (not isinstance(body, dict) or any(k not in body for k in need)):
            raise InputError(f"{path}: questions[{i}].{kinds[0]} needs {', '.join(need)}")
        if kinds[0] == "claims" and (not isinstance(body, list) or not all(
                isinstance(c, dict) and "paper" in c and isinstance(c.get("order"), list) for c in body)):
            raise InputError(f"{path}: questions[{i}].claims must list {{paper, order: [models, better first]}}")
        if not isinstance(q.get("note", ""), str):
            raise InputError(f"{path}: questions[{i}].note must be text")
        named = body.get("datasets") if isinstance(body, dict) else q.get("datasets")
        unknown = sorted(set(named or []) - set(datasets))
        if unknown:
            raise InputError(f"{path}: questions[{i}] names data sets {', '.join(unknown)} the board does not have")
    return list(questions)
