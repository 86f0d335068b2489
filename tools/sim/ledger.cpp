#include "tools/sim/ledger.hpp"

namespace parley::sim {

namespace {

constexpr uint8_t status_sent = 0x01;
constexpr uint8_t status_delivered = 0x02;
constexpr uint8_t status_read = 0x03;
constexpr uint8_t status_failure_bit = 0x80;

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

} // namespace

std::string payload_header::encode(size_t total) const {
  std::string out;
  out.reserve(total > size ? total : size);
  put_le(out, from, 4);
  put_le(out, to, 4);
  put_le(out, k, 8);
  put_le(out, static_cast<uint64_t>(sched_ns), 8);
  // Filler that differs per message (so nothing compresses it away).
  char c = static_cast<char>('a' + k % 26);
  while (out.size() < total)
    out.push_back(c);
  return out;
}

std::optional<payload_header> payload_header::decode(std::string_view p) {
  if (p.size() < size)
    return std::nullopt;
  payload_header h;
  h.from = static_cast<uint32_t>(get_le(p.data(), 4));
  h.to = static_cast<uint32_t>(get_le(p.data() + 4, 4));
  h.k = get_le(p.data() + 8, 8);
  h.sched_ns = static_cast<int64_t>(get_le(p.data() + 16, 8));
  return h;
}

uint64_t ledger::next(uint32_t from, uint32_t to) {
  auto key_ = key(from, to);
  auto& sh = shard_of(key_);
  std::lock_guard<std::mutex> guard{sh.mtx};
  auto& c = sh.convs[key_];
  c.flags.push_back(f_attempted);
  return c.flags.size();
}

void ledger::refused(uint32_t from, uint32_t to, uint64_t k) {
  auto key_ = key(from, to);
  auto& sh = shard_of(key_);
  std::lock_guard<std::mutex> guard{sh.mtx};
  auto it = sh.convs.find(key_);
  if (it == sh.convs.end())
    return;
  auto& c = it.value();
  if (k >= 1 && k <= c.flags.size())
    c.flags[k - 1] = 0;
}

void ledger::status(uint32_t from, uint32_t to, uint64_t k, uint8_t s) {
  auto key_ = key(from, to);
  auto& sh = shard_of(key_);
  std::lock_guard<std::mutex> guard{sh.mtx};
  auto it = sh.convs.find(key_);
  if (it == sh.convs.end())
    return;
  auto& c = it.value();
  if (k < 1 || k > c.flags.size())
    return;
  auto& f = c.flags[k - 1];
  if ((s & status_failure_bit) != 0)
    f |= f_failed;
  else if (s == status_sent)
    f |= f_sent;
  else if (s == status_delivered || s == status_read)
    f |= f_sent | f_receipt;
}

delivery ledger::delivered(uint32_t from, uint32_t to, uint64_t k) {
  auto key_ = key(from, to);
  auto& sh = shard_of(key_);
  std::lock_guard<std::mutex> guard{sh.mtx};
  auto& c = sh.convs[key_];
  if (k < 1 || k > c.flags.size() || (c.flags[k - 1] & f_attempted) == 0) {
    ++c.unexpected;
    return delivery::unexpected;
  }
  auto& f = c.flags[k - 1];
  if ((f & f_delivered) != 0) {
    ++c.duplicated;
    return delivery::duplicate;
  }
  f |= f_delivered;
  if ((f & f_failed) != 0) {
    ++c.unexpected;
    return delivery::unexpected;
  }
  if (k < c.max_delivered) {
    ++c.reordered;
    return delivery::reordered;
  }
  c.max_delivered = k;
  return delivery::first;
}

bool ledger::done(uint8_t f) const {
  if ((f & f_attempted) == 0 || (f & f_failed) != 0)
    return true;
  if ((f & f_sent) == 0 || (f & f_delivered) == 0)
    return false;
  return !want_receipts_ || (f & f_receipt) != 0;
}

uint64_t ledger::outstanding() const {
  uint64_t n = 0;
  for (auto& sh : shards_) {
    std::lock_guard<std::mutex> guard{sh.mtx};
    for (auto& [k, c] : sh.convs)
      for (size_t i = 0; i < c.flags.size(); ++i)
        if (!done(c.flags[i]))
          ++n;
  }
  return n;
}

std::vector<std::string> ledger::stuck(size_t max) const {
  std::vector<std::string> out;
  for (auto& sh : shards_) {
    std::lock_guard<std::mutex> guard{sh.mtx};
    for (auto& [k, c] : sh.convs) {
      size_t open = 0, first = 0;
      for (size_t i = 0; i < c.flags.size(); ++i)
        if (!done(c.flags[i]) && open++ == 0)
          first = i;
      if (open == 0)
        continue;
      auto f = c.flags[first];
      out.push_back(
        std::to_string(k >> 32) + "->" + std::to_string(k & 0xffffffffu) +
        ": " + std::to_string(open) + " open from #" +
        std::to_string(first + 1) + " (sent " + ((f & f_sent) ? "yes" : "no") +
        ", delivered " + ((f & f_delivered) ? "yes" : "no") + ", receipt " +
        ((f & f_receipt) ? "yes" : "no") + ")");
      if (out.size() >= max)
        return out;
    }
  }
  return out;
}

totals ledger::finish() const {
  totals t;
  for (auto& sh : shards_) {
    std::lock_guard<std::mutex> guard{sh.mtx};
    for (auto& [k, c] : sh.convs) {
      t.duplicated += c.duplicated;
      t.reordered += c.reordered;
      t.unexpected += c.unexpected;
      for (size_t i = 0; i < c.flags.size(); ++i) {
        auto f = c.flags[i];
        if ((f & f_attempted) == 0)
          continue;
        ++t.attempted;
        if ((f & f_sent) != 0)
          ++t.sent;
        if ((f & f_delivered) != 0 && (f & f_failed) == 0)
          ++t.delivered;
        if ((f & f_receipt) != 0)
          ++t.receipts;
        if ((f & f_failed) != 0)
          ++t.failed;
        if ((f & f_sent) != 0 && (f & f_delivered) == 0)
          ++t.lost;
        if (!done(f) && !((f & f_sent) != 0 && (f & f_delivered) == 0))
          ++t.pending;
      }
    }
  }
  return t;
}

} // namespace parley::sim
