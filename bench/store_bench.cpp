// Store benchmarks. items/s is messages/s.
//
// GroupCommit: the LMDB layer. Appends 200-byte records under big-endian
// (user, seq) keys, one write txn per batch, with and without fsync at
// commit.
//   build/bin/store_bench --benchmark_filter=GroupCommit
//
// ClientMessage: one message's work in the client SDK's local databases,
// both ends: the sender's store does add_new_outgoing, set_status SENT and
// set_status DELIVERED; the receiver's store does add_incoming and
// set_cursor. On LMDB without fsync and in memory (default cap, 100,000
// messages: a long run is in the evicting steady state).
//   build/bin/store_bench --benchmark_filter=ClientMessage
//
// LMDB databases live in temporary directories under /tmp (the machine's
// disk), removed after each run.

#include "store/client_store.hpp"
#include "store/keys.hpp"
#include "store/lmdb.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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

/// `memory`: the memory backend, else LMDB without fsync.
void client_message_work(benchmark::State& state, bool memory) {
  bench_dir sender_dir, receiver_dir;
  std::unique_ptr<client_store> sender, receiver;
  if (memory) {
    sender = client_store::open_memory();
    receiver = client_store::open_memory();
  } else {
    if (sender_dir.path.empty() || receiver_dir.path.empty()) {
      state.SkipWithError("mkdtemp failed");
      return;
    }
    env_options opts;
    opts.sync = false;
    auto s = client_store::open(sender_dir.path, opts);
    auto r = client_store::open(receiver_dir.path, opts);
    if (!s || !r) {
      state.SkipWithError((s ? r.error() : s.error()).to_string().c_str());
      return;
    }
    sender = std::move(*s);
    receiver = std::move(*r);
  }
  constexpr uint8_t sent = 0x01, delivered = 0x02, received_new = 0x12;
  constexpr uint16_t delivery_receipt = 0x01;
  constexpr int peers = 100;
  std::vector<std::string> names;
  for (int i = 0; i < peers; ++i)
    names.push_back("user" + std::to_string(100000 + i));
  const std::string payload(100, 'm');
  uint64_t now = 1'800'000'000'000;
  uint64_t seq = 0;
  for (auto _ : state) {
    const auto& peer = names[seq % peers];
    ++seq;
    ++now;
    // The sender.
    client_message m;
    m.peer = peer;
    m.sender = "alice";
    m.outgoing = true;
    m.flags = delivery_receipt;
    m.ts_ms = now;
    m.payload = payload;
    if (auto st = sender->add_new_outgoing(m, now); !st) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
    auto a = sender->set_status(m.mid, sent, seq, now);
    auto b = sender->set_status(m.mid, delivered);
    if (!a || !b) {
      state.SkipWithError("set_status failed");
      break;
    }
    // The receiver.
    client_message in;
    in.mid = m.mid;
    in.seq = seq;
    in.peer = "alice";
    in.sender = "alice";
    in.ts_ms = now;
    in.flags = delivery_receipt;
    in.status = received_new;
    in.payload = payload;
    auto fresh = receiver->add_incoming(in);
    if (!fresh || !*fresh) {
      state.SkipWithError("add_incoming failed");
      break;
    }
    if (auto st = receiver->set_cursor(seq); !st) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(seq));
}

} // namespace

BENCHMARK_CAPTURE(client_message_work, lmdb, false)
  ->Name("ClientMessage/lmdb_nosync")
  ->UseRealTime()
  ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(client_message_work, memory, true)
  ->Name("ClientMessage/memory")
  ->UseRealTime()
  ->Unit(benchmark::kMicrosecond);

BENCHMARK(group_commit)
  ->Name("GroupCommit")
  ->ArgNames({"batch", "sync"})
  ->ArgsProduct({{1, 8, 64, 512}, {1, 0}})
  ->UseRealTime()
  ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
