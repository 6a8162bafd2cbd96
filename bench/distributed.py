"""Wall time of N independent W1 sweeps: one after another (torch on all cores) vs `run_jobs` on a local Ray (one-thread workers).

    python bench/distributed.py [--jobs 4] [--epochs-per-lambda 6] [--workers 2]

Each job is one W1 sweep (`geoprobe.sweep.w1_sweep_job`: the small CNN on the embedded digits, the original's eleven λs)
from the same starting checkpoint into its own folder, so all jobs do the same work. The sequential run calls the jobs
in this process with torch using every core; the parallel run starts a local Ray and runs them through `run_jobs` with
`--workers` one-thread workers. Ray's fixed start-up (starting Ray and its first worker processes) is timed apart.
"""
import argparse, os, tempfile, time
from pathlib import Path

import torch

from geoprobe.data import load_digits_images
from geoprobe.dualgrad import prepare_branch_checkpoints, w1_data_spec
from geoprobe.distributed import Job, execute_job, run_jobs, start_ray
from geoprobe.sweep import W1Config, w1_sweep_configs, w1_sweep_job


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--jobs', type=int, default=4, help='number of independent sweeps')
    ap.add_argument('--epochs-per-lambda', type=int, default=6, help='epochs at each of the 11 λs (sets the length of a job)')
    ap.add_argument('--workers', type=int, default=2, help='Ray CPUs = one-thread workers')
    ap.add_argument('--one-thread-too', action='store_true', help='also time the sequential run with one torch thread')
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='bench_distributed_'))
    cores = os.cpu_count()

    x_tr, y_tr = load_digits_images(32, 'train')
    x_te, y_te = load_digits_images(32, 'test')
    torch.set_num_threads(cores)
    prepare_branch_checkpoints('ordered', epochs=2, seeds=[0], base_dir=tmp, keep_all=True, lr=0.05, train_data=(x_tr, y_tr),
                               test_data=(x_te, y_te), batch_size=128, model='small_cnn', device='cpu', augment=False, progress=False)
    ckpt = sorted(tmp.glob('exp_Ta_prep_ordered_*/checkpoints/*.pth'))[0]
    w1 = W1Config(noise_rate=0.4, batch_size=128, augment=False, model='small_cnn', epochs_per_lambda=args.epochs_per_lambda, k=16,
                  log_freq=10, lr=0.01)
    (_, sweep), = w1_sweep_configs(w1, [ckpt], [], w1_data_spec((x_tr, y_tr), (x_te, y_te), to_file=tmp/'data'))
    def jobs(folder): return [Job(f'sweep-{i}', w1_sweep_job, sweep, str(tmp/folder/f'sweep-{i}'), dict(checkpoint_path=str(ckpt), device='cpu')) for i in range(args.jobs)]

    print(f'{args.jobs} W1 sweeps (small CNN, {len(y_tr)} digits, 11 λ × {args.epochs_per_lambda} epochs) on {cores} cores, '
          f'torch {torch.__version__}')
    t0 = time.time()
    seq = [execute_job(j) for j in jobs('seq')]
    t_seq = time.time() - t0
    assert all(o['status'] == 'done' for o in seq), [o['error'] for o in seq if o['error']]
    per_job = t_seq / args.jobs
    print(f'sequential, torch with {cores} threads: {t_seq:7.1f}s ({per_job:.1f}s per job)')
    if args.one_thread_too:
        torch.set_num_threads(1)
        t0 = time.time()
        for j in jobs('seq1'): execute_job(j)
        t_seq1 = time.time() - t0
        print(f'sequential, torch with 1 thread:  {t_seq1:7.1f}s ({t_seq1 / args.jobs:.1f}s per job)')

    t0 = time.time()
    ray = start_ray(num_cpus=args.workers)
    warm = ray.remote(lambda: os.getpid()).options(num_cpus=1)
    pids = set(ray.get([warm.remote() for _ in range(args.workers)]))
    t_start = time.time() - t0
    print(f'Ray start-up (ray.init + {len(pids)} worker processes): {t_start:.1f}s')

    t0 = time.time()
    par = run_jobs(jobs('par'), 'ray', cpus_per_job=1, progress=False)
    t_par = time.time() - t0
    assert all(o['status'] == 'done' for o in par), [o['error'] for o in par if o['error']]
    print(f'run_jobs, {args.workers} one-thread workers:   {t_par:7.1f}s')
    print(f'speed-up: {t_seq / t_par:.2f}x (without Ray start-up), {t_seq / (t_par + t_start):.2f}x (with it)')
    if args.one_thread_too: print(f'speed-up over the one-thread sequential run: {t_seq1 / t_par:.2f}x')
    diff = max(abs(a['result']['final_error'] - b['result']['final_error']) for a, b in zip(seq, par))
    print(f'largest difference in final test error between the two runs: {diff:.4f} '
          f'(CPU kernels add in another order with 1 and {cores} threads)')
    ray.shutdown()


if __name__ == '__main__': main()
