"""``python -m bench.retrieval.tune``: sweep the HNSW knobs of arm C on one loaded corpus (not in CI).

Loads one corpus (default 100k chunks) into its own embedded stack, then answers the same questions
for the chosen users under each tuning and prints recall@10 and latency per setting. This is how
the defaults of :class:`mandate.retrieval.SearchTuning` were chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

import numpy as np
from opentelemetry import trace

from bench.retrieval.arms import QuestionEmbeddings, _row
from bench.retrieval.corpus import AGENT, TENANT, build_corpus, build_users
from bench.retrieval.run import FRACTIONS, _truths
from bench.retrieval.store import open_store, running_stack
from mandate.retrieval import AuthorizedRetriever, SearchTuning


async def _sweep(args: argparse.Namespace) -> None:
    corpus = build_corpus(args.chunks, questions=args.queries)
    users = [u for u in build_users(corpus, FRACTIONS) if u.name in args.users]
    with running_stack() as (database_url, fga_api_url):
        async with open_store(corpus, users, database_url=database_url, fga_api_url=fga_api_url,
                              tracer=trace.get_tracer("tune")) as store:
            truths = {u.name: _truths(corpus, u, 10)[0] for u in users}
            print("| user | exact_limit | ef_search | candidates | max_scan_tuples | recall | p50 ms | p99 ms |")
            for exact, ef, candidates, max_scan in itertools.product(args.exact_limit, args.ef, args.candidates, args.max_scan):
                tuning = SearchTuning(exact_limit=exact, ef_search=ef, hnsw_candidates=candidates, max_scan_tuples=max_scan)
                retriever = AuthorizedRetriever(
                    pool=store.pool, authz=store.authz, embeddings=QuestionEmbeddings(corpus.questions),
                    tracer=trace.get_tracer("tune"), min_similarity=-1.0, directory=store.directory, tuning=tuning,
                )
                for user in users:
                    await retriever.retrieve("q0", user=user.fga_user, tenant=TENANT, agent=AGENT, k=10)
                    seconds, recalls = [], []
                    for q in range(args.queries):
                        started = time.perf_counter()
                        found = await retriever.retrieve(f"q{q}", user=user.fga_user, tenant=TENANT, agent=AGENT, k=10)
                        seconds.append(time.perf_counter() - started)
                        rows = {_row(c.doc_id, c.chunk_index) for c in found}
                        recalls.append(len(rows & set(truths[user.name][q])) / 10)
                    ms = np.array(seconds) * 1000
                    print(f"| {user.name} | {exact} | {ef} | {candidates} | {max_scan} | {np.mean(recalls):.3f} "
                          f"| {np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} |", flush=True)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--users", nargs="+", default=["correlated-50%", "random-50%", "random-10%"])
    parser.add_argument("--ef", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 40, 100])
    parser.add_argument("--max-scan", type=int, nargs="+", default=[20_000])
    parser.add_argument("--exact-limit", type=int, nargs="+", default=[SearchTuning().exact_limit])
    asyncio.run(_sweep(parser.parse_args()))


if __name__ == "__main__":
    main()
