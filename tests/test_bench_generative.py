"""Generative models on Micro-Bench: a run killed midway (SIGKILL, in a subprocess) and continued gives the same table as
an uninterrupted run; a chat endpoint served locally sits beside a contrastive model in one `mtk bench eval` Table 1."""
import json, os, signal, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

RUN = '''
import sys, time
from microscopy_toolkit.bench.data import ubench_sample
from microscopy_toolkit.bench.generative import evaluate_generative
from microscopy_toolkit.models.vlm import tiny_vlm


class Slowed:
    "The tiny VLM, slowed after each batch so that the test can kill the run midway."

    def __init__(self, pause):
        self.vlm, self.pause = tiny_vlm(0, device='cpu'), pause
        self.name = self.vlm.name

    def generate(self, images, prompts, **kw):
        out = self.vlm.generate(images, prompts, **kw)
        time.sleep(self.pause)
        return out


cache, out, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
ds = ubench_sample().select(range(12))
r = evaluate_generative(Slowed(pause), ds, tasks=['stain', 'domain'], cache=cache, batch_size=4, max_new_tokens=3,
                        show_progress=False, n_resamples=1000)
r.items.to_csv(out, index=False)
r.per_task().to_csv(out + '.per_task.csv', index=False)
'''


def _run(tmp, cache, out, pause):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MTK_PROGRESS='0')
    script = tmp / 'run.py'
    script.write_text(RUN)
    return subprocess.Popen([sys.executable, str(script), str(cache), str(out), str(pause)], env=env)


def _lines(p: Path) -> int:
    return len(p.read_text().splitlines()) if p.exists() else 0


def _in_process(cache, out):
    "The same run as RUN without the pause, in this process (only the run that is killed needs its own process)."
    from microscopy_toolkit.bench.data import ubench_sample
    from microscopy_toolkit.bench.generative import evaluate_generative
    from microscopy_toolkit.models.vlm import tiny_vlm

    ds = ubench_sample().select(range(12))
    r = evaluate_generative(tiny_vlm(0, device='cpu'), ds, tasks=['stain', 'domain'], cache=cache, batch_size=4,
                            max_new_tokens=3, show_progress=False, n_resamples=1000)
    r.items.to_csv(out, index=False)
    r.per_task().to_csv(str(out) + '.per_task.csv', index=False)


def test_killed_run_resumes_to_the_same_table(tmp_path):
    killed = _run(tmp_path, tmp_path / 'b.jsonl', tmp_path / 'b.csv', 1.0)
    t0 = time.time()
    while _lines(tmp_path / 'b.jsonl') < 8 and time.time() - t0 < 240:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    done = _lines(tmp_path / 'b.jsonl')
    assert 8 <= done < 24 and not (tmp_path / 'b.csv').exists()  # killed midway: some answers cached, no table
    _in_process(tmp_path / 'a.jsonl', tmp_path / 'a.csv')  # the uninterrupted run
    _in_process(tmp_path / 'b.jsonl', tmp_path / 'b.csv')  # continued
    assert _lines(tmp_path / 'b.jsonl') == 24  # the rerun asked only the missing items
    for suffix in ('', '.per_task.csv'):
        a = pd.read_csv(str(tmp_path / 'a.csv') + suffix)
        b = pd.read_csv(str(tmp_path / 'b.csv') + suffix)
        pd.testing.assert_frame_equal(a, b)


class _AlwaysA(BaseHTTPRequestHandler):
    "A chat-completions server that answers 'A' to everything, after one 429 for the first request."
    first = [True]

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers['Content-Length']))
        if self.first[0]:
            self.first[0] = False
            self.send_response(429)
            self.send_header('Retry-After', '0')
            self.end_headers()
            return
        data = json.dumps({'choices': [{'message': {'role': 'assistant', 'content': 'A'}}]}).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_mtk_bench_eval_with_a_chat_endpoint_beside_a_contrastive_model(tmp_path, capsys):
    from microscopy_toolkit.cli import main
    from microscopy_toolkit.bench.data import ubench_sample, TASK_GROUPS
    from microscopy_toolkit.bench.generative import question_items

    server = ThreadingHTTPServer(('127.0.0.1', 0), _AlwaysA)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = f'chat:fake-vlm@http://127.0.0.1:{server.server_address[1]}/v1'
        rc = main(['bench', 'eval', 'tiny:0', spec, '--sample', '--group', 'coarse', '--n-resamples', '1000',
                   '-o', str(tmp_path / 'e')])
    finally:
        server.shutdown()
    assert rc == 0
    table = pd.read_csv(tmp_path / 'e' / 'table1.csv', index_col=0)
    name = spec[len('chat:'):]
    assert sorted(table.index) == sorted(['tiny:0', name])
    # answering 'A' everywhere is right exactly on the questions whose answer is the first option
    items = question_items(ubench_sample(seed=0), TASK_GROUPS['coarse'])
    want = 100 * np.mean([q['answer_idx'] == 0 for q in items])
    assert abs(table.loc[name, 'Perception (coarse-grained)'] - want) < 1e-9
    ranks = pd.read_csv(tmp_path / 'e' / 'table1_ranks.csv', index_col=0)
    assert sorted(ranks.iloc[:, 0].tolist()) in ([1, 2], [1, 1])
    assert f"wrote {tmp_path / 'e' / 'table1.csv'}" in capsys.readouterr().out
