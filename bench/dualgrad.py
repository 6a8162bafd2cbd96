"""Time per training step: (a) plain SGD, (b) the original W1 cell's dual-gradient step, (c) geoprobe's `dual_gradient_step`.

Same model, same batch, same optimiser (SGD, momentum 0.9, weight decay 5e-4) for all three.
(b) is `geoprobe.dualgrad.original_dual_gradient_step`, the one transcription of the original's step (the parity tests
use the same): two forward passes and two full backward passes on every step, the clean gradient cached every K steps,
geometry logged every LOG_FREQ steps.
(c) is geoprobe's step with k=16, log_freq=50: one forward pass, the clean gradient only on refresh and log steps.
Each variant keeps its own step counter, so a run of N steps contains its share of refresh (every 16) and log
(every 50) steps. The variants run interleaved step by step (rotating order) so that other load on the machine hits
all of them alike. On CPU the script uses one thread by default and reports process CPU time, which other processes
barely disturb, next to wall time; it prints the mean time per step (all steps, refresh and log steps included) and
the ratios (b)/(a) and (c)/(a).

    python bench/dualgrad.py                                  # small CNN (batch 128) and ResNet-18 (batch 32), CPU
    python bench/dualgrad.py --models resnet18 --batch 256 --device cuda --steps 400
"""
import argparse, copy, time

import torch
import torch.nn.functional as F

from geoprobe.dualgrad import dual_gradient_step, original_dual_gradient_step, resnet18_cifar, small_cnn

K, LOG_FREQ, LAM = 16, 50, 0.5


def plain_step(model, opt, x, noisy_y, clean_y, state):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), noisy_y).backward()
    opt.step()
    state['step'] += 1


def original_step(model, opt, x, noisy_y, clean_y, state):
    entry = original_dual_gradient_step(model, opt, x, noisy_y, clean_y, LAM, state, k=K, log_freq=LOG_FREQ)
    if entry is not None: state['logs'].append(entry)


def geoprobe_step(model, opt, x, noisy_y, clean_y, state):
    entry = dual_gradient_step(model, opt, x, noisy_y, clean_y, LAM, state, k=K, log_freq=LOG_FREQ)
    if entry is not None: state['logs'].append(entry)


VARIANTS = {'(a) plain SGD': plain_step, '(b) original step': original_step, '(c) geoprobe k=16': geoprobe_step}


def bench_model(name, make_model, batch, steps, device, warmup):
    torch.manual_seed(0)
    base = make_model().to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    clean_y = torch.randint(0, 10, (batch,), device=device)
    noisy_y = torch.where(torch.rand(batch, device=device) < 0.4, torch.randint(0, 10, (batch,), device=device), clean_y)
    runs = {}
    for v in VARIANTS:
        m = copy.deepcopy(base).train()
        runs[v] = dict(model=m, opt=torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4),
                       state={'step': 0, 'gv': None, 'logs': []}, wall=[], cpu=[])
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    for v, fn in VARIANTS.items():  # warm-up (allocator, kernels); the step counters restart afterwards
        r = runs[v]
        for _ in range(warmup): fn(r['model'], r['opt'], x, noisy_y, clean_y, r['state'])
        r['state'].update(step=0, gv=None, logs=[])
    order = list(VARIANTS)
    for i in range(steps):  # one step of each variant per round, in rotating order
        for v in order[i % 3:] + order[:i % 3]:
            r, fn = runs[v], VARIANTS[v]
            sync(); t, c = time.perf_counter(), time.process_time()
            fn(r['model'], r['opt'], x, noisy_y, clean_y, r['state'])
            sync(); r['wall'].append(time.perf_counter() - t); r['cpu'].append(time.process_time() - c)
    a, b, c = order
    n = runs[c]['state']['step']
    print(f'\n{name}, batch {batch}, {device}, {n} interleaved steps per variant '
          f'({sum(s % K == 0 or s % LOG_FREQ == 0 for s in range(n))} of them with a second backward in (c))')
    med = {}
    for clock in (['wall'] if device.type == 'cuda' else ['cpu', 'wall']):
        tot = {v: sum(runs[v][clock]) / n for v in order}
        med[clock] = tot
        print(f'  {clock + " time":9s}' + ''.join(f'  {v}: {1000 * tot[v]:8.2f} ms/step' for v in order))
        print(f'  {"":9s}  (b)/(a) = {tot[b] / tot[a]:.2f}   (c)/(a) = {tot[c] / tot[a]:.2f}')
    return med


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', default='small_cnn,resnet18', help='comma-separated: small_cnn, resnet18')
    p.add_argument('--batch', type=int, default=None, help='batch size for all models (default: 128 small_cnn, 32 resnet18)')
    p.add_argument('--steps', type=int, default=None, help='timed steps per variant (default: 300 small_cnn, 64 resnet18)')
    p.add_argument('--warmup', type=int, default=3, help='untimed steps per variant first')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (1: CPU time is then a clean measure under load)')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = {'small_cnn': (small_cnn, 128, 300), 'resnet18': (resnet18_cifar, 32, 64)}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads; k={K}, log_freq={LOG_FREQ}')
    for name in args.models.split(','):
        fn, batch, steps = models[name]
        bench_model(name, fn, args.batch or batch, args.steps or steps, device, args.warmup)


if __name__ == '__main__': main()
