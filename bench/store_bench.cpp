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
// ServerChat: server_store::apply() as parleyd's storage actor calls it, in
// the chat scenario's pattern: 1,000 users, random 1:1 pairs, 100-byte
// payloads asking for DELIVERED; each batch holds `batch` messages and the
// acks of the previous batch's receivers (which append the receipts), or
// with mix:1 parleyd's own pattern: every device that got records acks its
// new head, and the acks arrive among the messages. With and without fsync.
// This is the layer the journal changed (store format 3): one page per user
// touched before, a few contiguous pages now.
//   build/bin/store_bench --benchmark_filter=ServerChat
//
// LMDB databases live in temporary directories under /tmp (the machine's
// disk), removed after each run.

#include "store/client_store.hpp"
#include "store/keys.hpp"
#include "store/lmdb.hpp"
#include "store/server_store.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace parley::store;

namespace {

/// Bytes this process handed to write(), pwrite() and writev() so far
/// (/proc/self/io wchar): LMDB's page writes, in these benchmarks.
uint64_t bytes_written() {
  std::ifstream f{"/proc/self/io"};
  std::string k;
  uint64_t v = 0;
  while (f >> k >> v)
    if (k == "wchar:")
      return v;
  return 0;
}

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

/// args: messages per batch, sync (1) or MDB_NOSYNC (0), mix: 0 = the
/// receivers' acks first in the batch; 1 = parleyd's pattern, every device
/// acks its new head and the acks arrive among the messages.
void server_chat(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  const bool sync = state.range(1) != 0;
  const bool mixed = state.range(2) != 0;
  bench_dir dir;
  server_store_options o;
  o.env.sync = false; // the users are made without fsync, then reopened
  std::unique_ptr<server_store> db;
  {
    auto s = server_store::open(dir.path, o);
    if (!s) {
      state.SkipWithError(s.error().to_string().c_str());
      return;
    }
    db = std::move(*s);
  }
  const uint64_t t0 = 1'800'000'000'000;
  if (!db->app_add("bench", "").ok()) {
    state.SkipWithError("app_add failed");
    return;
  }
  std::vector<uint64_t> uid(users);
  for (uint64_t i = 0; i < users; ++i) {
    auto t = db->user_add("bench", "u" + std::to_string(i), "", 0, t0);
    if (!t) {
      state.SkipWithError(t.error().to_string().c_str());
      return;
    }
    uid[i] = t->uid;
  }
  std::mt19937_64 rng{42};
  std::uniform_int_distribution<uint64_t> pick{0, users - 1};
  const std::string payload(100, 'x');
  std::vector<write_op> ops;
  std::vector<write_outcome> out;
  std::vector<uint64_t> touched, heads;
  std::vector<appended_record> appended;
  std::vector<std::pair<uint64_t, uint64_t>> to_ack; // (uid, seq)
  uint64_t mid = t0 << 8, done = 0, now = t0;
  auto one_batch = [&]() -> bool {
    // The clock moves as in a 20,000 msgs/s chat: 20 messages a
    // millisecond. (A fixed time would give every record of a run the same
    // expiry, and put its `expiries` keys, then ordered by uid and seq, on
    // pages all over the table instead of at its right edge.)
    now = t0 + done / 20;
    ops.clear();
    for (auto& [u, seq] : to_ack)
      ops.push_back(ack_op{u, "d", seq, now});
    to_ack.clear();
    for (size_t i = 0; i < batch; ++i) {
      uint64_t from = pick(rng), to = pick(rng);
      if (to == from)
        to = (to + 1) % users;
      append_op a;
      a.sender_uid = uid[from];
      a.app_id = "bench";
      a.sender = "u" + std::to_string(from);
      a.device = "d";
      a.msg.mid = ++mid;
      a.msg.peer = "u" + std::to_string(to);
      a.msg.flags = parley::codec::message_flags::delivery_receipt;
      a.msg.expiry_s = parley::codec::default_expiry_s;
      a.msg.payload = payload;
      a.now_ms = now + i / 20;
      ops.push_back(std::move(a));
      if (!mixed)
        to_ack.emplace_back(uid[to], 0);
    }
    if (mixed) // acks arrive among the messages, as sessions hand them in
      std::shuffle(ops.begin(), ops.end(), rng);
    if (auto st = db->apply(ops, out, touched, &heads, &appended); !st) {
      state.SkipWithError(st.to_string().c_str());
      return false;
    }
    if (mixed) {
      // Every device acks its new head (its copies, SENT and DELIVERED
      // records, incoming messages) in the next batch.
      for (size_t i = 0; i < touched.size(); ++i)
        to_ack.emplace_back(touched[i], heads[i]);
    } else {
      // The receivers ack what this batch gave them, in the next batch.
      size_t k = ops.size() - batch;
      for (auto& [u, seq] : to_ack)
        seq = out[k++].append.receiver_seq;
    }
    done += batch;
    return true;
  };
  // Steady state before the clock starts: three epochs' worth of batches
  // (without fsync) fill the journal's two tables and move whole epochs
  // into the log, so every measured batch carries its share of the move,
  // whatever the epoch's length (64 gens of at least one batch each).
  for (int rep = 0; rep < 3 * 64; ++rep)
    if (!one_batch())
      return;
  const uint64_t warm = done;
  db.reset();
  o.env.sync = sync;
  auto s = server_store::open(dir.path, o);
  if (!s) {
    state.SkipWithError(s.error().to_string().c_str());
    return;
  }
  db = std::move(*s);
  // One iteration is 40 batches, so that a single one under callgrind
  // (--benchmark_min_time=0.001) is a steady-state sample:
  //   valgrind --tool=callgrind '--toggle-collect=*server_store::apply*'
  //     build/bin/store_bench --benchmark_filter=ServerChat/batch:512/sync:0
  //     --benchmark_min_time=0.001
  // gives the instructions per message independent of the machine's
  // noise: total / (232 × 512), the 192 warm-up batches included (since
  // session 14; 104 × 512 with 64 from session 9; before, 40 × 512).
  const uint64_t written0 = bytes_written();
  for (auto _ : state)
    for (int rep = 0; rep < 40; ++rep)
      if (!one_batch())
        return;
  state.SetItemsProcessed(static_cast<int64_t>(done - warm));
  // What the commits wrote per message: the pages LMDB rewrites (each
  // dirty page whole, the meta page at each commit) for every message.
  state.counters["written_B_per_msg"] =
    benchmark::Counter(static_cast<double>(bytes_written() - written0) /
                       static_cast<double>(std::max<uint64_t>(1, done - warm)));
}

} // namespace

BENCHMARK(server_chat)
  ->Name("ServerChat")
  ->ArgNames({"batch", "sync", "mix"})
  ->ArgsProduct({{16, 64, 256, 512}, {1, 0}, {0, 1}})
  ->UseRealTime()
  ->Unit(benchmark::kMicrosecond);

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
