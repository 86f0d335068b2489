// Codec micro-benchmarks: encode and decode of typical frames.
//   build/bin/codec_bench --benchmark_filter=ChatSend
// Goal (issue 2): encode+decode of a 100-byte chat message frame at >= 10M
// frames/s on one core. Figures go to BENCHMARKS.md.

#include "codec/codec.hpp"
#include "tests/codec/samples.hpp"

#include <benchmark/benchmark.h>

using namespace parley::codec;

namespace {

message sample_delivery() {
  message m;
  m.seq = 123456;
  m.ts_ms = 1700000000000;
  m.sender = "alice@example.org";
  m.peer = m.sender;
  m.mid = 0x0123456789abcdefull;
  m.flags = message_flags::delivery_receipt;
  m.kind = 1;
  m.payload.assign(100, 'x');
  return m;
}

template<class Frame>
void encode_frame(benchmark::State& state, const Frame& f) {
  buffer out;
  out.reserve(4096);
  for (auto _ : state) {
    out.clear();
    encode(f, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(out.size()));
}

template<class Frame>
void decode_frame(benchmark::State& state, const Frame& f) {
  buffer out;
  encode(f, out);
  Frame into;
  for (auto _ : state) {
    auto e =
      decode_body(out.data() + header_size, out.size() - header_size, into);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(into);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(out.size()));
}

template<class Frame>
void round_trip(benchmark::State& state, const Frame& f) {
  buffer out;
  out.reserve(4096);
  Frame into;
  size_t frame_size = 0;
  for (auto _ : state) {
    out.clear();
    encode(f, out);
    frame_size = out.size();
    auto e =
      decode_body(out.data() + header_size, out.size() - header_size, into);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(into);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(frame_size));
}

void BM_ChatSendEncode(benchmark::State& s) {
  encode_frame(s, sample_chat_send());
}
void BM_ChatSendDecode(benchmark::State& s) {
  decode_frame(s, sample_chat_send());
}
void BM_ChatSendEncodeDecode(benchmark::State& s) {
  round_trip(s, sample_chat_send());
}
void BM_DeliveryEncodeDecode(benchmark::State& s) {
  round_trip(s, sample_delivery());
}
void BM_AckEncodeDecode(benchmark::State& s) {
  round_trip(s, ack{42});
}

/// A connection's read path: a 64 KiB read holding many chat frames, split
/// by the parser and decoded into a reused variant.
void BM_ParseStreamOfChatSends(benchmark::State& state) {
  buffer stream;
  size_t frames = 0;
  while (stream.size() < 64 * 1024) {
    encode(sample_chat_send(), stream);
    ++frames;
  }
  frame f;
  for (auto _ : state) {
    frame_parser p;
    p.feed(stream.data(), stream.size(),
           [&](frame_type t, const uint8_t* b, size_t n) {
             benchmark::DoNotOptimize(decode(t, b, n, f));
           });
  }
  state.SetItemsProcessed(state.iterations() * int64_t(frames));
  state.SetBytesProcessed(state.iterations() * int64_t(stream.size()));
}

} // namespace

BENCHMARK(BM_ChatSendEncode);
BENCHMARK(BM_ChatSendDecode);
BENCHMARK(BM_ChatSendEncodeDecode);
BENCHMARK(BM_DeliveryEncodeDecode);
BENCHMARK(BM_AckEncodeDecode);
BENCHMARK(BM_ParseStreamOfChatSends);

BENCHMARK_MAIN();
