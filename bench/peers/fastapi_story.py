"""The story's own stack, for scenario 1: a FastAPI endpoint that runs three blocking calls (time.sleep of 0.1,
0.2 and 0.3 s) together on a ThreadPoolExecutor, served by uvicorn.

    python3 bench/peers/fastapi_story.py --port 8000

The executor is sized for the benchmark's load (100 connections x 3 calls = 300 threads) so the pool is not the
bottleneck; ThreadPoolExecutor's default (min(32, CPUs + 4) threads) would cap it at a few requests a second.
"""

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from fastapi import FastAPI

app = FastAPI()
executor = ThreadPoolExecutor(max_workers=300)


def read_file():
    time.sleep(0.1)
    return "file contents"


def query_db():
    time.sleep(0.2)
    return [{"id": 1, "name": "row"}]


def call_api():
    time.sleep(0.3)
    return {"ok": True}


@app.get("/")
async def story():
    loop = asyncio.get_running_loop()
    file, db, api = await asyncio.gather(
        loop.run_in_executor(executor, read_file),
        loop.run_in_executor(executor, query_db),
        loop.run_in_executor(executor, call_api),
    )
    return {"file": file, "db": db, "api": api}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
