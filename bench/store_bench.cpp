// LMDB layer benchmark: group commit. Appends 200-byte records under
// big-endian (user, seq) keys, one write txn per batch, with and without
// fsync at commit. items/s is messages/s.
//   build/bin/store_bench --benchmark_filter=GroupCommit
// The database lives in a temporary directory under /tmp (the machine's
// disk), removed after each run.

#include "store/keys.hpp"
#include "store/lmdb.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

using namespace parley::store;

namespace {

constexpr size_t record_size = 200;
constexpr uint64_t users = 1000;

/// A temporary data directory, removed when done.
struct bench_dir {
  std::string path;

  bench_dir() {
    char tmpl[] = "/tmp/parley-store-bench-XXXXXX";
    if (char* p = mkdtemp(tmpl))
      path = p;
  }

  ~bench_dir() {
    std::error_code ec;
    if (!path.empty())
      std::filesystem::remove_all(path, ec);
  }
};

/// args: batch size, sync (1) or MDB_NOSYNC (0).
void group_commit(benchmark::State& state) {
  const auto batch = static_cast<uint64_t>(state.range(0));
  const bool sync = state.range(1) != 0;
  bench_dir dir;
  if (dir.path.empty()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  env_options opts;
  opts.sync = sync;
  auto e = env::open(dir.path, opts);
  if (!e) {
    state.SkipWithError(e.error().to_string().c_str());
    return;
  }
  auto log = (*e)->open_dbi("log");
  if (!log) {
    state.SkipWithError(log.error().to_string().c_str());
    return;
  }
  // Message i goes to user (i * 7919) % users: every user in turn, in a
  // scattered order (7919 is prime to 1000), with seq i / users. So each
  // batch inserts into many users' logs, like a server's storage actor.
  uint64_t n = 0; // messages written so far
  char body[record_size];
  std::memset(body, 'm', sizeof(body));
  for (auto _ : state) {
    auto st = (*e)->write([&](txn& t) -> parley::status {
      uint64_t i = n; // a rerun after growing the map starts again from n
      for (uint64_t end = n + batch; i < end; ++i) {
        key_builder k;
        k.u64((i * 7919) % users).u64(i / users);
        auto span = t.reserve(*log, k, record_size);
        if (!span)
          return span.error();
        std::memcpy(span->data, body, record_size);
        encode_be64(span->data, i); // a per-message field, like a timestamp
      }
      n = i;
      return {};
    });
    if (!st.ok()) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(n));
  state.SetBytesProcessed(static_cast<int64_t>(n * record_size));
  state.counters["batch"] = static_cast<double>(batch);
  state.counters["commits/s"] = benchmark::Counter(
    static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

} // namespace

BENCHMARK(group_commit)
  ->Name("GroupCommit")
  ->ArgNames({"batch", "sync"})
  ->ArgsProduct({{1, 8, 64, 512}, {1, 0}})
  ->UseRealTime()
  ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
