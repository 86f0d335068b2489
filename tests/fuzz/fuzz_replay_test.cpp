// Deterministic run of the decoder fuzz property inside the normal suite:
// the committed seed corpus, then fixed-seed mutations of it. The real
// coverage-guided run is scripts/fuzz (libFuzzer, clang).

#include "tests/codec/samples.hpp"
#include "tests/fuzz/fuzz_decoder.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

namespace {

std::vector<std::vector<uint8_t>> load_corpus() {
  std::vector<std::vector<uint8_t>> out;
  for (auto& entry : std::filesystem::directory_iterator(PARLEY_FUZZ_CORPUS)) {
    std::ifstream in{entry.path(), std::ios::binary};
    out.emplace_back(std::istreambuf_iterator<char>{in},
                     std::istreambuf_iterator<char>{});
  }
  return out;
}

} // namespace

TEST_CASE("the committed seed corpus decodes and holds the property") {
  auto corpus = load_corpus();
  REQUIRE(corpus.size() >= std::variant_size_v<parley::codec::frame>);
  size_t frames = 0;
  for (auto& input : corpus)
    frames += parley::fuzz::run_decoder_property(input.data(), input.size());
  // Every frame type has a seed that decodes.
  CHECK(frames >= std::variant_size_v<parley::codec::frame>);
}

TEST_CASE("fixed-seed mutations of the corpus hold the property") {
  auto corpus = load_corpus();
  std::mt19937_64 rng{20261124};
  size_t decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    auto input = corpus[rng() % corpus.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !input.empty(); ++e) {
      switch (rng() % 4) {
      case 0:
        input[rng() % input.size()] = static_cast<uint8_t>(rng());
        break;
      case 1:
        input.resize(rng() % (input.size() + 1));
        break;
      case 2:
        input.insert(input.begin() + rng() % input.size(),
                     static_cast<uint8_t>(rng()));
        break;
      default:
        input[rng() % input.size()] ^= 1u << (rng() % 8);
        break;
      }
    }
    decoded += parley::fuzz::run_decoder_property(input.data(), input.size());
  }
  // A violated property aborts the process; this checks the mutations are
  // mild enough that many inputs still reach the decoder's success path.
  CHECK(decoded > 1000);
}

TEST_CASE("seed corpus files are what the samples encode") {
  // build/bin/make_corpus tests/fuzz/corpus regenerates them.
  using namespace parley::codec;
  auto samples = sample_frames();
  size_t found = 0;
  for (auto& f : samples) {
    auto path = std::filesystem::path{PARLEY_FUZZ_CORPUS} /
                (std::string{"seed-"} + std::string{to_string(type_of(f))});
    std::ifstream in{path, std::ios::binary};
    if (!in)
      continue;
    std::vector<uint8_t> bytes{std::istreambuf_iterator<char>{in},
                               std::istreambuf_iterator<char>{}};
    buffer expected{0};
    REQUIRE(encode(f, expected) == errc::ok);
    CHECK(bytes == expected);
    ++found;
  }
  CHECK(found == samples.size());
}
