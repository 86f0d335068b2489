// TLS micro-benchmark: what one record costs through Parley's tls::stream
// (OpenSSL 3 over memory BIOs, as sessions and clients use it), with no
// socket: the sender encrypts a flush's bytes into one record, the
// receiver decrypts it. This is the per-record share of a message's CPU
// that BENCHMARKS.md ("Where a message's CPU goes") attributes to OpenSSL.
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

} // namespace

BENCHMARK(tls_record)
  ->Name("TlsRecord")
  ->ArgName("bytes")
  ->Arg(200)
  ->Arg(1000)
  ->Arg(8000);

BENCHMARK_MAIN();
