"""Keeps README.md and docs/ honest: command lines, make targets, paths and links.

Every page is read with markdown-it (CommonMark plus tables) and checked for:

* command lines: each shell statement of a fenced block (languages ``sh``,
  ``bash``, ``shell``, ``console`` or none) and each inline code span that
  starts with ``pyllmd <command>``, ``.venv/bin/pyllmd``, ``python -m pyllmd``
  or ``llm-d-inference-sim`` (after ``NAME=value`` environment prefixes), or
  with ``python -m bench`` (the benchmarks' own argparse parser), is
  parsed by that command's own flag parser and validation, the code each
  command runs before it starts serving (``PARSERS``), with the prefixes as
  its environment. Nothing is started and nothing is sent over the network.
  Continuation lines (``\\``), shell comments, ``;``/``&&``/``|``/``&`` and
  redirections are understood. An inline span holding only a command's name
  (```pyllmd epp```) names it: only the sub-command is checked;
* placeholders: a command line with ``<...>`` in it cannot be parsed; it is
  skipped only when ``PLACEHOLDER_SKIPS`` lists it with the reason, otherwise
  it is a problem;
* run-time files: a file a command line names that exists only where the
  command runs (a certificate, the user's own config) is replaced by a stub
  from ``RUNTIME_FILES``, which says why; every other file must exist;
* ``make <target>``: the target is a rule of the Makefile;
* repository paths in inline code (``src/...``, ``docs/...``, ``tests/...``,
  ``tools/...``, ``bench/...``, ``config/...``, ``.ci/...``, the root files,
  and ``sim/``, ``epp/``, ``autoscaler/``, ``stack/``, ``core/`` under
  ``src/pyllmd``) exist, ``*`` and ``<name>`` matching anything and
  ``{a,b}`` expanded;
* relative markdown links point at an existing file, and their ``#anchor``
  at a heading of the target page (GitHub's anchors);
* metric names in inline code (``vllm:*``, ``wva_*``, ``inference_objective_*``,
  ``inference_pool_*``, ``inference_extension_*``, ``pyllmd:*``,
  ``kvcache_index_*``, ``llm_d_*``) occur in the package's source, with or
  without a ``_bucket``/``_sum``/``_count``/``_total`` suffix; and the other way
  round, every metric name the package declares (a quoted string with one of
  those prefixes; the autoscaler's config keys aside) is named on some page;
* every flag of the commands whose flags are documented by hand (``FLAG_PAGES``:
  ``pyllmd up``, ``pd-sidecar``, ``dataset``) is named on its page; the other
  commands' flag pages are generated and checked by their own tests.

Each problem is one line: ``page:line: what: why``.
Usage: ``python tools/doccheck.py`` (exit 1 when a problem is found).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = frozenset({"", "sh", "bash", "shell", "console", "zsh"})
SUBCOMMANDS = frozenset(
    {"sim", "epp", "autoscaler", "up", "pd-sidecar", "dataset", "simulate", "calibrate"}
)
HELP_WORDS = frozenset({"-h", "--help", "help"})
PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")
# Shell operators that end a statement, and redirections (whose target word is dropped).
SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&"})
REDIRECTIONS = frozenset({">", ">>", "<", "<<", "<<<", ">&", "&>", "&>>", "<&", ">|"})
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# A word that is a repository path, and the package directories the architecture page uses.
REPO_PATH = re.compile(
    r"^(?:(?:src|docs|tests|tools|bench|config|\.ci)/[^\s`'\"]*"
    r"|Makefile|pyproject\.toml|Containerfile|README\.md)$"
)
PACKAGE_PATH = re.compile(r"^(?:sim|epp|autoscaler|stack|core)/[\w./*{},<>-]+$")
METRIC = re.compile(
    r"(?<![\w:])((?:vllm:|wva_|inference_objective_|inference_pool_|inference_extension_"
    r"|pyllmd:|kvcache_index_|llm_d_)[A-Za-z_][A-Za-z0-9_:]*)(?![\w.*])"
)

# Command lines of the docs that keep a placeholder on purpose: (page, command) -> why.
PLACEHOLDER_SKIPS: dict[tuple[str, str], str] = {
    (
        "docs/developer-guide/benchmarks.md",
        "pyllmd epp --static-endpoints=<sim> --secure-serving=false --bind-address=127.0.0.1"
        " --metrics-endpoint-auth=false",
    ): "the benchmark's wiring: the simulator listens on a free port chosen at each run",
}

# Files the docs' command lines name that exist only where the command runs:
# name -> (stub content, why). The stub is written to a temporary directory.
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
RUNTIME_FILES: dict[str, tuple[str, str]] = {
    "sim.yaml": ("model: m\n", "the user's simulator config file (install.md shows one)"),
    "pd.yaml": (
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n",
        "the user's EPP config (epp-pd.md shows the P/D one)",
    ),
}


@dataclass(frozen=True)
class Snippet:
    """Code from a page: a fenced block's logical line or an inline span."""

    page: str
    line: int  # 1-based
    text: str
    inline: bool


@dataclass(frozen=True)
class Command:
    """One invocation: its environment prefixes, program and arguments."""

    env: Mapping[str, str]
    command: str  # a sub-command of SUBCOMMANDS, or "" for bare `pyllmd`
    argv: tuple[str, ...]
    text: str  # the statement's words after the env prefixes, shell quoting removed


@dataclass(frozen=True)
class Problem:
    """One bad line of a page, printed as `page:line: what: why`."""

    page: str
    line: int
    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.what}: {self.why}"


@dataclass
class Page:
    """A parsed page: its code snippets, links and heading anchors."""

    name: str
    snippets: list[Snippet] = field(default_factory=list)
    links: list[tuple[int, str]] = field(default_factory=list)
    anchors: set[str] = field(default_factory=set)


# ---------------------------------------------------------------- reading pages


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _balanced(text: str) -> bool:
    try:
        list(_lexer(text))
    except ValueError:
        return False
    return True


def _logical_lines(content: str, first_line: int) -> Iterator[tuple[int, str]]:
    """A block's shell lines: `\\` continuations and quotes spanning lines joined;
    (1-based line of the first, text)."""
    lines = content.splitlines()
    pending, start = "", first_line
    for offset, raw in enumerate(lines):
        if not pending:
            start = first_line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        pending += raw
        if not _balanced(pending) and offset < len(lines) - 1:
            pending += "\n"  # a quoted argument spanning lines (`python -c '...'`)
            continue
        yield start, pending
        pending = ""
    if pending:
        yield start, pending


def _inline_spans(token: Token) -> Iterator[tuple[int, Token]]:
    """The children of an inline token with the 1-based line each starts on."""
    assert token.map is not None
    content, pos = token.content, 0
    for child in token.children or []:
        if child.type == "code_inline":
            found = content.find(child.content.split(" ")[0], pos)
            if found >= 0:
                pos = found
        yield token.map[0] + 1 + content.count("\n", 0, pos), child


def read_page(name: str, text: str) -> Page:
    """Code snippets, links and anchors of one markdown page."""
    page = Page(name)
    seen: dict[str, int] = {}
    tokens = _markdown().parse(text)
    for i, token in enumerate(tokens):
        if token.type == "fence" and token.map is not None:
            language = token.info.strip().split(" ")[0].lower() if token.info else ""
            if language in SHELL_LANGUAGES:
                for line, logical in _logical_lines(token.content, token.map[0] + 2):
                    page.snippets.append(Snippet(name, line, logical, inline=False))
        elif token.type == "heading_open":
            title = "".join(c.content for c in tokens[i + 1].children or [])
            base = slug(title)
            count = seen.get(base, 0)
            seen[base] = count + 1
            page.anchors.add(base if count == 0 else f"{base}-{count}")
        elif token.type == "inline" and token.map is not None:
            for line, child in _inline_spans(token):
                if child.type == "code_inline":
                    code = child.content.replace("\\|", "|")
                    page.snippets.append(Snippet(name, line, code, inline=True))
                elif child.type in ("link_open", "image"):
                    target = str(child.attrs.get("href") or child.attrs.get("src") or "")
                    page.links.append((line, target))
    return page


# ---------------------------------------------------------------- shell statements


def _protect(text: str) -> str:
    """`<a placeholder>` as one word for the lexer (restored by `_restore`)."""
    return PLACEHOLDER.sub(
        lambda m: m.group(0).replace("<", "\u2039").replace(">", "\u203a").replace(" ", "\u00a0"),
        text,
    )


def _restore(word: str) -> str:
    return word.replace("\u2039", "<").replace("\u203a", ">").replace("\u00a0", " ")


def _lexer(text: str) -> shlex.shlex:
    text = re.sub(r"(?:^|(?<=\s))\d+(?=[<>])", "", text.removeprefix("$ "))  # `2>&1`: fd numbers
    lexer = shlex.shlex(_protect(text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return lexer


def statements(text: str) -> list[list[str]]:
    """Words of each shell statement of one logical line (comments and redirections dropped)."""
    result: list[list[str]] = [[]]
    words = iter(_lexer(text))
    for word in words:
        if word in SEPARATORS:
            result.append([])
        elif word in REDIRECTIONS:
            next(words, None)
        else:
            result[-1].append(_restore(word))
    return [s for s in result if s]


def _program(words: Sequence[str]) -> tuple[str, int] | None:
    """("pyllmd" or "sim", index of the first argument) when `words` invokes pyllmd."""
    if not words:
        return None
    first = words[0]
    if first == "pyllmd" or first.endswith("/pyllmd"):
        return "pyllmd", 1
    if first == "llm-d-inference-sim" or first.endswith("/llm-d-inference-sim"):
        return "sim", 1
    python = re.fullmatch(r"(?:\S*/)?python(?:3(?:\.\d+)?)?", first)
    if python and words[1:3] == ["-m", "pyllmd"]:
        return "pyllmd", 3
    if python and words[1:3] == ["-m", "bench"]:
        return "bench", 3
    return None


def commands(text: str) -> list[Command]:
    """The pyllmd invocations of one logical line of shell."""
    found = []
    for words in statements(text):
        env: dict[str, str] = {}
        while words and ENV_ASSIGNMENT.match(words[0]):
            key, _, value = words[0].partition("=")
            env[key] = value
            words = words[1:]
        if words and words[0] == "exec":
            words = words[1:]
        program = _program(words)
        if program is None:
            continue
        name, start = program
        args = list(words[start:])
        if args and args[0].endswith(":"):
            continue  # `pyllmd epp: error: ...` is the output of a command, not a command
        if name == "pyllmd":
            top_level = HELP_WORDS | {"--version"}  # `pyllmd --help`, `pyllmd --version`
            name = args.pop(0) if args and args[0] not in top_level else ""
        found.append(Command(env, name, tuple(args), " ".join(words)))
    return found


def make_targets(text: str) -> list[str]:
    """Targets of the `make` invocations of one logical line of shell."""
    targets = []
    for words in statements(text):
        while words and ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words or words[0] != "make":
            continue
        targets += [w for w in words[1:] if not w.startswith("-") and not ENV_ASSIGNMENT.match(w)]
    return targets


def makefile_targets(makefile: str) -> set[str]:
    """The rule names of a Makefile (explicit rules; variables and patterns ignored)."""
    names: set[str] = set()
    for line in makefile.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if match:
            names.update(match.group(1).split())
    return names


# ---------------------------------------------------------------- the parsers


def _parse_sim(argv: Sequence[str], env: Mapping[str, str]) -> None:
    from pyllmd.sim.config import load_config

    load_config(argv, env, 0)


def _parse_epp(argv: Sequence[str], env: Mapping[str, str]) -> None:
    from pyllmd.epp.options import load_options
    from pyllmd.epp.run import build_epp, load_epp_config

    options = load_options(argv, env)
    build_epp(options, load_epp_config(options, env), env=env)  # wires, no network I/O


def _parse_autoscaler(argv: Sequence[str], env: Mapping[str, str]) -> None:
    from pyllmd.autoscaler.config import load_controller_config

    load_controller_config(argv, env)


def _parse_up(argv: Sequence[str], env: Mapping[str, str]) -> None:
    # `pyllmd up`'s flags, then what the stack reads first (the stack file).
    from pyllmd.stack.run import read_stack_file
    from pyllmd.stack.up_config import up_options

    opts, _ = up_options(argv)
    read_stack_file(opts.stack_file)


def _parse_pd_sidecar(argv: Sequence[str], env: Mapping[str, str]) -> None:
    from pyllmd.sidecar.config import load_options

    load_options(argv, env)


def _parse_dataset(argv: Sequence[str], env: Mapping[str, str]) -> None:
    # The flags only: the input file and the model's tokenizer are the user's.
    from pyllmd.sim.dataset.tool import parse_options

    parse_options(argv)


def _parse_simulate(argv: Sequence[str], env: Mapping[str, str]) -> None:
    # The flags only: the stack and workload files are the user's.
    from pyllmd.simulate.run import load_options

    load_options(argv)


def _parse_calibrate(argv: Sequence[str], env: Mapping[str, str]) -> None:
    # The flags only: the runs CSV is the user's.
    from pyllmd.simulate.calibrate_run import load_options

    load_options(argv)


def _parse_bench(argv: Sequence[str], env: Mapping[str, str]) -> None:
    import io

    from bench.run import parse_args

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parse_args(list(argv))
    except SystemExit as exit_:
        if exit_.code:  # argparse's usage error; 0 is --help
            lines = errors.getvalue().strip().splitlines()
            raise ValueError(lines[-1] if lines else f"exit status {exit_.code}") from None


def _parse_pyllmd(argv: Sequence[str], env: Mapping[str, str]) -> None:
    if argv and argv[0] not in HELP_WORDS and argv[0] != "--version":
        raise ValueError(f"unknown command {argv[0]!r}")


Parser = Callable[[Sequence[str], Mapping[str, str]], None]
PARSERS: dict[str, Parser] = {
    "": _parse_pyllmd,
    "sim": _parse_sim,
    "epp": _parse_epp,
    "autoscaler": _parse_autoscaler,
    "up": _parse_up,
    "pd-sidecar": _parse_pd_sidecar,
    "dataset": _parse_dataset,
    "simulate": _parse_simulate,
    "calibrate": _parse_calibrate,
    "bench": _parse_bench,
}


def _with_stubs(argv: Sequence[str], stubs: Mapping[str, Path]) -> list[str]:
    """`argv` with run-time file names (`x`, `--flag=x`) replaced by their stubs."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if arg in stubs:
            arg = str(stubs[arg])
        elif eq and flag.startswith("-") and value in stubs:
            arg = f"{flag}={stubs[value]}"
        out.append(arg)
    return out


def parse_error(command: Command, stubs: Mapping[str, Path], base_env: Mapping[str, str]) -> str:
    """Why the command line does not parse, or "" when it does."""
    from pyllmd.core.flags import HelpRequested, VersionRequested

    parser = PARSERS.get(command.command)
    if parser is None:
        return f"unknown command {command.command!r}"
    env = {**base_env, **command.env}
    try:
        parser(_with_stubs(command.argv, stubs), env)
    except (HelpRequested, VersionRequested):
        return ""
    except Exception as err:  # the parser's own message is the point
        return f"{type(err).__name__}: {err}" if not str(err) else str(err)
    return ""


# ---------------------------------------------------------------- checking


def _glob_exists(root: Path, path: str) -> bool:
    pattern = PLACEHOLDER.sub("*", path).rstrip("/")
    braces = re.search(r"\{([^{}]*)\}", pattern)
    if braces:
        return all(
            _glob_exists(root, pattern[: braces.start()] + part + pattern[braces.end() :])
            for part in braces.group(1).split(",")
        )
    if "*" in pattern:
        return any(root.glob(pattern))
    return (root / pattern).exists()


def path_problems(snippet: Snippet, root: Path) -> list[Problem]:
    """Repository paths named in an inline code span that do not exist."""
    problems = []
    for word in snippet.text.split():
        word = word.rstrip(".,:;)")
        if REPO_PATH.match(word):
            base = root
        elif PACKAGE_PATH.match(word):
            base = root / "src" / "pyllmd"
        else:
            continue
        path, *names = word.split("::")
        if not _glob_exists(base, path):
            where = "" if base == root else " (under src/pyllmd)"
            problems.append(
                Problem(snippet.page, snippet.line, f"`{word}`", f"no such path{where}")
            )
        elif names and (base / path).is_file():
            source = (base / path).read_text(encoding="utf-8")
            for name in names:
                definition = rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b"
                if not re.search(definition, source, re.M):
                    problems.append(
                        Problem(snippet.page, snippet.line, f"`{word}`", f"no {name} in {path}")
                    )
    return problems


def metric_problems(snippet: Snippet, source: str) -> list[Problem]:
    """Metric names in an inline code span that the package's source never mentions."""
    problems = []
    for name in METRIC.findall(snippet.text):
        base = re.sub(r"_(?:bucket|sum|count|total)$", "", name)
        if name not in source and base not in source:
            problems.append(Problem(snippet.page, snippet.line, f"`{name}`", "no such metric"))
    return problems


# Commands whose flags are documented by hand: sub-command -> (module, flag table, page).
FLAG_PAGES: dict[str, tuple[str, str, str]] = {
    "up": ("pyllmd.stack.up_config", "UP_FLAGS", "docs/user-guide/admin/autoscaler-local.md"),
    "pd-sidecar": (
        "pyllmd.sidecar.config",
        "FLAGS",
        "docs/user-guide/admin/epp-pd.md",
    ),
    "dataset": (
        "pyllmd.sim.dataset.tool",
        "TOOL_FLAGS",
        "docs/user-guide/admin/datasets-and-tokenizers.md",
    ),
    "simulate": ("pyllmd.simulate.run", "SIMULATE_FLAGS", "docs/user-guide/admin/simulate.md"),
    "calibrate": (
        "pyllmd.simulate.calibrate_run",
        "CALIBRATE_FLAGS",
        "docs/user-guide/admin/calibrate.md",
    ),
}


def undocumented_flags(root: Path, pages: Mapping[str, str]) -> list[Problem]:
    """Flags of the FLAG_PAGES commands that their page does not name (`--name`)."""
    import importlib

    problems = []
    for command, (module, attribute, page) in FLAG_PAGES.items():
        specs = getattr(importlib.import_module(module), attribute)
        text = pages.get(page) or (root / page).read_text(encoding="utf-8")
        for spec in specs:
            if len(spec.name) > 1 and not re.search(rf"--{re.escape(spec.name)}(?![\w-])", text):
                what = f"pyllmd {command} --{spec.name}"
                problems.append(Problem(page, 1, what, "flag not documented on this page"))
    return problems


def undocumented_metrics(root: Path, pages: Mapping[str, str]) -> list[Problem]:
    """Metric names declared in the package's source that no page mentions."""
    text = "\n".join(pages.values())
    problems = []
    for path in sorted((root / "src" / "pyllmd").rglob("*.py")):
        if path.name == "config_table.py":  # WVA_* keys in lower case, not metrics
            continue
        rel = str(path.relative_to(root))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in re.findall(r"[\"']" + METRIC.pattern + r"[\"']", line):
                if name not in text:
                    problems.append(Problem(rel, number, f"`{name}`", "metric not documented"))
    return problems


def link_problems(page: Page, pages: dict[str, Page], root: Path) -> list[Problem]:
    """Relative links to missing files or to anchors their page does not have
    (pages not yet in `pages` are read from `root` and added)."""
    problems = []
    for line, target in page.links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or not target:
            continue
        path, _, anchor = target.partition("#")
        if path:
            resolved = (root / page.name).parent / path
            if not resolved.exists():
                problems.append(Problem(page.name, line, f"link {target}", "no such file"))
                continue
            rel = os.path.relpath(resolved.resolve(), root.resolve())
        else:
            rel = page.name
        if not anchor or not rel.endswith(".md"):
            continue
        if rel not in pages:
            pages[rel] = read_page(rel, (root / rel).read_text(encoding="utf-8"))
        if anchor not in pages[rel].anchors:
            problems.append(Problem(page.name, line, f"link {target}", f"no heading #{anchor}"))
    return problems


def _is_name_only(snippet: Snippet, command: Command) -> bool:
    """An inline span that only names a command (```pyllmd epp```, ```llm-d-inference-sim```)."""
    return snippet.inline and not command.argv and not command.env


def snippet_problems(
    snippet: Snippet,
    targets: set[str],
    stubs: Mapping[str, Path],
    base_env: Mapping[str, str],
    root: Path,
    source: str = "",
) -> list[Problem]:
    """Everything wrong with one code snippet (`source`: the package's code, for metrics)."""
    problems: list[Problem] = []
    text = " ".join(snippet.text.split())
    found: list[Command] = []
    wanted: list[str] = []
    if re.search(r"\b(pyllmd|llm-d-inference-sim|make|bench)\b", text) and (
        not snippet.inline or re.match(r"^(\S+=\S*\s+)*\S*(pyllmd|python|llm-d|make)", text)
    ):  # an inline span is a command line only when it starts with the command
        try:
            found, wanted = commands(text), make_targets(text)
        except ValueError as err:  # unbalanced quotes
            return [Problem(snippet.page, snippet.line, text, f"not shell syntax: {err}")]
    if snippet.inline and not found:  # a command line's files are its parser's business
        problems += path_problems(snippet, root)
        problems += metric_problems(snippet, source)
    for target in wanted:
        if target not in targets:
            problems.append(Problem(snippet.page, snippet.line, f"make {target}", "no such target"))
    for command in found:
        if PLACEHOLDER.search(command.text):
            if (snippet.page, command.text) not in PLACEHOLDER_SKIPS:
                problems.append(
                    Problem(
                        snippet.page,
                        snippet.line,
                        command.text,
                        "placeholder: give a real value or list it in PLACEHOLDER_SKIPS with why",
                    )
                )
            continue
        if _is_name_only(snippet, command):
            if command.command and command.command not in SUBCOMMANDS:
                problem = Problem(snippet.page, snippet.line, command.text, "no such command")
                problems.append(problem)
            continue
        error = parse_error(command, stubs, base_env)
        if error:
            problems.append(Problem(snippet.page, snippet.line, command.text, error))
    return problems


def doc_pages(root: Path) -> dict[str, str]:
    """README.md and every page under docs/, by repository-relative name."""
    names = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in names}


@contextlib.contextmanager
def runtime_stubs(
    files: Mapping[str, tuple[str, str]] = RUNTIME_FILES,
) -> Iterator[tuple[dict[str, Path], dict[str, str]]]:
    """The run-time files' stubs in a temporary directory, and a kubeconfig for the EPP."""
    with tempfile.TemporaryDirectory(prefix="doccheck-") as tmp:
        stubs = {}
        for name, (content, _why) in files.items():
            path = Path(tmp) / name
            path.write_text(content, encoding="utf-8")
            stubs[name] = path
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG, encoding="utf-8")
        # Pool-mode EPP command lines run where a kubeconfig is: the client is built, unused.
        yield stubs, {"KUBECONFIG": str(kubeconfig)}


def check(pages_text: Mapping[str, str], root: Path = ROOT) -> list[Problem]:
    """All problems of the given pages (name -> markdown), names relative to `root`."""
    pages = {name: read_page(name, text) for name, text in pages_text.items()}
    targets = makefile_targets((root / "Makefile").read_text(encoding="utf-8"))
    source = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted((root / "src" / "pyllmd").rglob("*.py"))
    )
    problems: list[Problem] = []
    with runtime_stubs() as (stubs, base_env), _cwd(root):
        for page in list(pages.values()):
            for snippet in page.snippets:
                problems += snippet_problems(snippet, targets, stubs, base_env, root, source)
            problems += link_problems(page, pages, root)
    return problems


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """Relative paths of the command lines are the repository's."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def main() -> int:
    import logging

    logging.disable(logging.CRITICAL)  # parsers warn about deprecated flags; not a problem
    sys.path.insert(0, str(ROOT))  # `bench` is imported from the repository, as pytest does
    pages = doc_pages(ROOT)
    problems = check(pages) + undocumented_metrics(ROOT, pages) + undocumented_flags(ROOT, pages)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
