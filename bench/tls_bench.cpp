// TLS micro-benchmarks: what a full handshake costs each side, and what one
// record costs through Parley's tls::stream (OpenSSL 3 over memory BIOs, as
// sessions and clients use it), with no socket: the sender encrypts a flush's
// bytes into one record, the receiver decrypts it. This is the per-record share
// of a message's CPU that BENCHMARKS.md ("Where a message's CPU goes")
// attributes to OpenSSL.
//   build/bin/tls_bench
// For instructions per record independent of the machine's noise (divide
// by the calls of stream::send that callgrind_annotate --tree=calling shows):
//   valgrind --tool=callgrind '--toggle-collect=parley::tls::stream::send*'
//     '--toggle-collect=parley::tls::stream::receive*' build/bin/tls_bench
//     --benchmark_filter=TlsRecord/bytes:200 --benchmark_min_time=0.2
// (the handshake's receive calls are counted too: subtract SSL_do_handshake)

#include "actors/tls/tls.hpp"
#include "tests/support/tls_pair.hpp"

#include <benchmark/benchmark.h>

using namespace parley;

namespace {

/// One record per iteration: encrypt `bytes` on one side, decrypt on the
/// other (the record of one flush and its read).
void tls_record(benchmark::State& state) {
  test::tls_pair p;
  if (!p.error.empty()) {
    state.SkipWithError(p.error.c_str());
    return;
  }
  const tls::bytes frames(static_cast<size_t>(state.range(0)), 0x5a);
  tls::bytes cipher, plain, back;
  for (auto _ : state) {
    cipher.clear();
    plain.clear();
    if (auto s = p.client->send(frames.data(), frames.size(), cipher); !s) {
      state.SkipWithError(s.to_string().c_str());
      break;
    }
    if (auto s = p.server->receive(cipher.data(), cipher.size(), plain, back);
        !s || plain.size() != frames.size()) {
      state.SkipWithError("the record did not come through whole");
      break;
    }
    benchmark::DoNotOptimize(plain.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

/// One TLS 1.3 handshake per iteration between fresh streams on shared
/// contexts, both sides in this thread, the server's session ticket
/// included. `client_us` and `server_us` are each side's share per
/// handshake. Arg 0: a full handshake, the client verifying the server's
/// certificate against a CA file (parley-sim's logins: every user is new);
/// 1: full, the client pinning the certificate's fingerprint instead;
/// 2: the client resumes the ticket of the previous connection (a
/// reconnect).
void tls_handshake(benchmark::State& state) {
  tls::client_options co;
  if (state.range(0) == 1)
    co.pinned_fingerprint = "generated";
  test::tls_pair p{co};
  if (!p.error.empty()) {
    state.SkipWithError(p.error.c_str());
    return;
  }
  bool resume = state.range(0) == 2;
  test::handshake_times t;
  for (auto _ : state) {
    auto offer = resume ? p.client->latest_ticket() : nullptr;
    if (auto e = p.connect(&t, offer); !e.empty()) {
      state.SkipWithError(e.c_str());
      break;
    }
    if (resume && !p.client->resumed()) {
      state.SkipWithError("the server did not resume the ticket");
      break;
    }
  }
  auto n = static_cast<double>(state.iterations());
  state.counters["client_us"] = static_cast<double>(t.client_ns) / n / 1e3;
  state.counters["server_us"] = static_cast<double>(t.server_ns) / n / 1e3;
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(tls_handshake)
  ->Name("TlsHandshake")
  ->ArgName("mode")
  ->Arg(0)
  ->Arg(1)
  ->Arg(2);

BENCHMARK(tls_record)
  ->Name("TlsRecord")
  ->ArgName("bytes")
  ->Arg(200)
  ->Arg(1000)
  ->Arg(8000);

BENCHMARK_MAIN();
