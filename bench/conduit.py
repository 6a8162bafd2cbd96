"""Benchmark: geoprobe's FLEighConduit vs torch.linalg.eigh vs the reference geolip-core FLEighConduit.

Times all three in one run on the same input: B Gram matrices G = Vt^T diag(S^2) Vt of size n x n, as Cell 5
builds them from one CIFAR batch (128 images x 256 patches = 32,768 4x4 matrices), and prints the throughput ratios.

    python bench/conduit.py                      # CPU, 2 threads, B = 32768
    python bench/conduit.py --device cuda --batch 32768 1048576
    GEOLIP_CORE_PATH=/path/to/geolip-core python bench/conduit.py   # include the reference when not installed

The reference is used only when importable (`geolip_core` installed, or a checkout at $GEOLIP_CORE_PATH).
"""
import argparse, os, sys, time

import torch

from geoprobe.conduit import FLEighConduit, gram_batch  # the Cell-5-like Gram matrices of the conduit's tests


def load_reference():
    "The reference FLEighConduit class, or None with the reason."
    path = os.environ.get('GEOLIP_CORE_PATH')
    if path: sys.path.insert(0, path)
    try:
        from geolip_core.linalg.conduit import FLEighConduit as Ref
        return Ref, None
    except Exception as e:  # not installed, or its package imports fail
        return None, f'{type(e).__name__}: {e}'


def best_time(fn, device, reps):
    "Fastest of `reps` timed calls after one warm-up call, in seconds."
    fn()
    best = float('inf')
    for _ in range(reps):
        if device.type == 'cuda': torch.cuda.synchronize()
        t = time.perf_counter(); fn()
        if device.type == 'cuda': torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    ap.add_argument('--batch', type=int, nargs='+', default=[32768])
    ap.add_argument('--n', type=int, default=4)
    ap.add_argument('--reps', type=int, default=10)
    ap.add_argument('--fused', action='store_true', help='also time FLEighConduit(fused=True) (torch.compile; slow to compile on a CPU)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    Ref, why = load_reference()
    print(f'torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, n = {args.n} '
          f'(on the CPU geoprobe solves the batch in min(threads, B // {FLEighConduit.min_part}) parts at once, one thread each)')
    print('reference: ' + ('geolip_core FLEighConduit' if Ref else f'not importable ({why})'))
    for B in args.batch:
        A = gram_batch(B, args.n, device=device)
        ours = FLEighConduit()
        runs = {'geoprobe FLEighConduit': lambda: ours(A), 'torch.linalg.eigh': lambda: torch.linalg.eigh(A)}
        if args.fused:
            fused = FLEighConduit(fused=True)
            runs['geoprobe fused'] = lambda: fused(A)
        if Ref is not None:
            ref = Ref().to(device)
            runs['reference FLEighConduit'] = lambda: ref(A)
        times = {}
        for _ in range(2):   # interleave the candidates so that machine noise hits them alike
            for k, f in runs.items(): times[k] = min(times.get(k, float('inf')), best_time(f, device, args.reps // 2 or 1))
        print(f'\nB = {B}')
        for k, t in times.items(): print(f'  {k:<26} {t * 1e3:9.2f} ms  {B / t / 1e6:8.2f} M matrices/s')
        g = times['geoprobe FLEighConduit']
        print(f'  geoprobe vs eigh:      {times["torch.linalg.eigh"] / g:5.2f}x throughput (target >= 2 on CPU)')
        if args.fused: print(f'  fused vs eigh:         {times["torch.linalg.eigh"] / times["geoprobe fused"]:5.2f}x throughput (target >= 10 on GPU at B = 1,048,576)')
        if Ref is not None:
            print(f'  geoprobe vs reference: {times["reference FLEighConduit"] / g:5.2f}x throughput (target >= 4)')
        if Ref is not None and B <= 1 << 16:
            p, r = ours(A), ref(A)
            good = r.refinement_residual < 1e-3
            print(f'  parity on {int(good.sum())}/{B} rows the reference gets right: settle identical '
                  f'{bool(torch.equal(p.settle[good], r.settle[good]))}, friction identical '
                  f'{bool(torch.equal(p.friction[good], r.friction[good]))}, max |eigenvalue diff| '
                  f'{float((p.eigenvalues[good] - r.eigenvalues[good]).abs().max()):.1e}; geoprobe repaired {int(p.repaired.sum())} rows')


if __name__ == '__main__':
    main()
