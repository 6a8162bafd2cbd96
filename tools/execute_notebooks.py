#!/usr/bin/env python
"""Execute notebooks in place and check their committed outputs.

    python tools/execute_notebooks.py                      # execute every nbs/**/*.ipynb, clean, shrink images, check
    python tools/execute_notebooks.py nbs/09_plots.ipynb   # only these notebooks
    python tools/execute_notebooks.py --check              # only check the outputs (no execution); what CI runs

Execution follows `nbdev_test`: each notebook runs in a fresh process with execnb's `CaptureShell`, from the
notebook's folder, skipping non-code cells, cells flagged with settings.ini's `tst_flags` (`#| slow`, `#| gpu`,
`#| colab`) and `#| eval: false` cells (their stored outputs are kept unless `--clear-skipped`). The environment is
fixed so that outputs do not depend on the machine: MPLBACKEND unset (inline figures), figures rendered as plain
PNG at the figure's own dpi (not execnb's default 'retina', which doubles it), TQDM_DISABLE=1 (no progress bars),
OMP_NUM_THREADS=1, PYTHONHASHSEED=0, IN_TEST=1 (as nbdev_test sets it). A notebook whose run raises is left
unchanged. Every image/png output of an executed notebook is then re-encoded as a 256-colour palette PNG when that
is smaller and visually identical (mean pixel error below 1 level in 255), and `nbdev_clean` runs on the notebooks
written.

The check (run after executing, or alone with `--check`) fails, listing each offender by notebook and cell, on
outputs holding a progress bar, a temporary path, a Ray worker/raylet log line, an execution timing or an error,
and reports each notebook's size and the total, failing when the total exceeds `--max-total` bytes (2,000,000).

Exit status: 0 all good, 1 the check failed, 2 a notebook failed to execute.
"""
from __future__ import annotations
import argparse, base64, copy, io, json, os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_TOTAL = 2_000_000

# ---------------------------------------------------------------------------------------------------------- check
# (category, regex) pairs searched in every text an output holds (stream text, text/* data, error tracebacks).
OFFENDERS = [
    ('progress bar', re.compile(r'\d\s?(?:it/s|s/it)\b|\d%\|')),
    ('progress bar', re.compile(r'\[\d{1,2}:\d\d(?::\d\d)?<')),  # tqdm's [elapsed<remaining
    ('temporary path', re.compile(r'/tmp/|/var/folders/|\\Temp\\|[/\\]tmp[a-z0-9_]{8}(?![A-Za-z0-9_])')),
    ('Ray log', re.compile(r'\(pid=|pid=\d+(?:, ip=[\d.]+)?\)|raylet|INFO worker\.py|Started a local Ray instance')),
    ('timing', re.compile(r'Wall time:|CPU times:|per loop \(mean|\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|min|minutes)\b(?!-|/it)')),
]
_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'  # tqdm.auto's notebook bar, among other widgets


def default_notebooks() -> list[Path]:
    "Every notebook under nbs/, skipping folders whose name starts with '.' or '_' (as nbdev does)."
    nbs = ROOT/'nbs'
    return sorted(p for p in nbs.rglob('*.ipynb')
                  if not any(part.startswith(('.', '_')) for part in p.relative_to(nbs).parent.parts))


def _text(v) -> str: return ''.join(v) if isinstance(v, list) else str(v)


def output_texts(out: dict):
    "Yield (where, text) for each piece of text an output holds."
    kind = out.get('output_type')
    if kind == 'stream': yield out.get('name', 'stream'), _text(out.get('text', ''))
    elif kind == 'error': yield 'error', '\n'.join([f"{out.get('ename')}: {out.get('evalue')}", *out.get('traceback', [])])
    for mime, v in (out.get('data') or {}).items():
        if mime.startswith('text/') or mime.endswith('json'): yield mime, _text(v) if isinstance(v, (str, list)) else json.dumps(v)


def _snippet(text: str, m: re.Match, before: int = 30, width: int = 80) -> str:
    "The line around match `m`, cut to `width` characters with the match `before` characters in."
    start = text.rfind('\n', 0, m.start()) + 1
    end = text.find('\n', m.end()); end = len(text) if end < 0 else end
    lo = max(start, m.start() - before)
    line = _ANSI.sub('', text[lo:end]).replace('\r', '⏎').strip()
    return ('…' if lo > start else '') + (line if len(line) <= width else line[:width - 1] + '…')


def check_notebook(path: Path) -> tuple[int, list[str]]:
    "The notebook's size in bytes and one line per offending output."
    raw = path.read_bytes()
    try: nb = json.loads(raw)
    except json.JSONDecodeError as e: return len(raw), [f'not valid JSON: {e}']
    problems = []
    for i, cell in enumerate(nb.get('cells', [])):
        where = f"cell {i}" + (f" (id {cell['id']})" if cell.get('id') else '')
        for out in cell.get('outputs', []) or []:
            found = {}
            if out.get('output_type') == 'error': found['error output'] = f"{out.get('ename')}: {_text(out.get('evalue', ''))[:60]}"
            if WIDGET_MIME in (out.get('data') or {}): found.setdefault('widget (progress bar?)', 'a widget view')
            for _, text in output_texts(out):
                text = _ANSI.sub('', text)
                for cat, rx in OFFENDERS:
                    if cat not in found and (m := rx.search(text)): found[cat] = _snippet(text, m)
            problems += [f'{where}: {cat}: {snip}' for cat, snip in found.items()]
    return len(raw), problems


def check(paths: list[Path], max_total: int = MAX_TOTAL) -> bool:
    "Print each notebook's size and offenders, then the total; True when nothing offends and the total fits."
    total, ok = 0, True
    width = max(len(_rel(p)) for p in paths) if paths else 0
    for p in paths:
        size, problems = check_notebook(p)
        total += size
        print(f'{_rel(p):<{width}}  {size:>10,} bytes' + (f'  {len(problems)} offending output(s)' if problems else ''))
        for line in problems: print(f'    {line}')
        ok &= not problems
    over = total > max_total
    print(f"{'total':<{width}}  {total:>10,} bytes (limit {max_total:,}){'  OVER THE LIMIT' if over else ''}")
    if not ok: print('Outputs hold progress bars, temporary paths, Ray logs, timings or errors: '
                     're-run with tools/execute_notebooks.py after fixing the cells listed above.')
    return ok and not over


def _rel(p: Path) -> str:
    try: return str(p.resolve().relative_to(ROOT))
    except ValueError: return str(p)

# ------------------------------------------------------------------------------------------------------ execution
def shrink_png(b64: str, max_mean_error: float = 1.0) -> str:
    "`b64` as a palette PNG when that is smaller and close to the original (mean error < `max_mean_error` levels)."
    import numpy as np
    from PIL import Image
    data = base64.b64decode(b64)
    im = Image.open(io.BytesIO(data)); im.load()
    if im.mode not in ('RGB', 'RGBA'): return b64
    if im.mode == 'RGBA':
        if im.getextrema()[3][0] < 255: return b64  # real transparency: keep
        im = im.convert('RGB')
    pal = im.quantize(256, method=Image.Quantize.MEDIANCUT)
    err = np.abs(np.asarray(pal.convert('RGB'), dtype=np.int16) - np.asarray(im, dtype=np.int16)).max(-1)
    if err.mean() > max_mean_error: return b64
    buf = io.BytesIO(); pal.save(buf, format='PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(data) else b64


def shrink_images(path: Path) -> tuple[int, int]:
    "Re-encode the notebook's PNG outputs with `shrink_png`; return the image bytes (base64) before and after."
    nb = json.loads(path.read_text(encoding='utf-8'))
    before = after = 0
    for cell in nb['cells']:
        for out in cell.get('outputs', []) or []:
            data = out.get('data') or {}
            if 'image/png' not in data: continue
            b64 = ''.join(data['image/png']).strip()
            new = shrink_png(b64)
            before += len(b64); after += len(new)
            data['image/png'] = new
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    return before, after


def _execute_one(path: Path, clear_skipped: bool, timeout: int | None) -> None:
    "Run `path` in this process (started by `execute` with the fixed environment) and write it back on success."
    from fastcore.xtras import working_directory
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.config import get_config
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor, extract_directives, nb_lang

    flags = set(get_config().tst_flags.split())
    fm = getattr(NBProcessor(path, procs=FrontmatterProc, process=True).nb, 'frontmatter_', {}) or {}
    nb = read_nb(path)
    if str(fm.get('skip_exec', '')).lower() in ('true', '1', 'yes') or nb_lang(nb) != 'python':
        print(f'  skipped (skip_exec or not Python)'); return
    skipped = []

    def no_eval(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        direc = extract_directives(copy.deepcopy(cell), remove=False)
        skip = direc.get('eval:', [''])[0].lower() == 'false' or bool(flags & direc.keys())
        if skip:
            skipped.append(cell.idx_)
            if clear_skipped: cell.outputs = []
        else: cell.outputs = []  # execnb only replaces outputs when the new run has some: a silent cell would keep stale ones
        return skip

    sys.path.insert(0, str(ROOT))
    shell = CaptureShell(path, mpl_format='png', timeout=timeout)
    try:
        with working_directory(path.parent): shell.run_all(nb, exc_stop=True, preproc=no_eval)
    except BaseException:
        sys.stderr.write(shell.prettytb(fname=path) + '\nThe notebook is left unchanged.\n')
        sys.exit(1)
    write_nb(nb, path)
    print(f"  executed; skipped {len(skipped)} flagged cell(s)" + (f' (outputs cleared)' if clear_skipped and skipped else ''))


def _nbdev_clean() -> str:
    "The nbdev_clean next to this Python (the virtual environment's), else the one on PATH."
    exe = Path(sys.executable).parent/'nbdev_clean'
    return str(exe) if exe.exists() else 'nbdev_clean'


def run_env() -> dict:
    "The environment notebooks execute in."
    env = dict(os.environ)
    env.pop('MPLBACKEND', None)
    env.update(TQDM_DISABLE='1', OMP_NUM_THREADS='1', PYTHONHASHSEED='0', IN_TEST='1')
    return env


def execute(paths: list[Path], clear_skipped: bool = False, shrink: bool = True, timeout: int | None = None) -> list[Path]:
    "Execute each notebook in a fresh process, then shrink images and `nbdev_clean` those written; return the failures."
    failures, written = [], []
    for p in paths:
        print(f'{_rel(p)}', flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), '--_execute-one', str(p)]
        if clear_skipped: cmd.append('--clear-skipped')
        if timeout: cmd += ['--timeout', str(timeout)]
        if subprocess.run(cmd, env=run_env(), cwd=ROOT).returncode: failures.append(p); continue  # left unchanged
        if shrink:
            b, a = shrink_images(p)
            if b: print(f'  images {b:,} -> {a:,} bytes (base64)')
        written.append(p)
    for p in written:
        if subprocess.run([_nbdev_clean(), '--fname', str(p)], cwd=ROOT).returncode:
            print(f'  nbdev_clean failed on {_rel(p)}'); failures.append(p)
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 2)[2])
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to execute/check (default: every nbs/**/*.ipynb)')
    ap.add_argument('--check', action='store_true', help='only check the stored outputs and sizes; execute nothing')
    ap.add_argument('--max-total', type=int, default=MAX_TOTAL, help='size limit in bytes for the notebooks together')
    ap.add_argument('--clear-skipped', action='store_true', help='clear the stored outputs of cells that are not executed')
    ap.add_argument('--no-shrink', action='store_true', help='keep PNG outputs exactly as rendered')
    ap.add_argument('--timeout', type=int, default=None, help='per-cell time limit in seconds')
    ap.add_argument('--_execute-one', dest='execute_one', type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with the child processes' output
    if a.execute_one: _execute_one(a.execute_one.resolve(), a.clear_skipped, a.timeout); return 0

    paths = [p.resolve() for p in a.notebooks] or default_notebooks()
    missing = [p for p in paths if not p.is_file()]
    if missing: ap.error(f"no such notebook: {', '.join(map(str, missing))}")
    if not a.check:
        failures = execute(paths, a.clear_skipped, not a.no_shrink, a.timeout)
        if failures:
            print('Failed (a cell raised: notebook left unchanged; or nbdev_clean failed): ' + ', '.join(_rel(p) for p in failures))
            check(paths, a.max_total)
            return 2
    return 0 if check(paths, a.max_total) else 1


if __name__ == '__main__': sys.exit(main())
