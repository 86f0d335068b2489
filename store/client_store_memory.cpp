// The memory backend of client_store (client_store::open_memory): the same
// contract as the LMDB backend, without files, with a cap on the messages
// held (memory_options). Messages stay structs: nothing is encoded.
//
//   msgs_     id -> message
//   conv      per conversation (peers_ by peer, groups_ by group id): the
//             ids it holds in ascending order (an id_queue: appends and the
//             evictions of old messages are at its ends), its last id, its
//             unread count and, once evicted, its last message
//   by_seq_   seq -> id              (dedup of incoming by server log seq)
//   by_mid_   mid -> id              (dedup by (sender, mid): the sender is
//             compared on the message, so no key copies the sender; the
//             rare second message with a mid held already goes to
//             more_mid_, a multimap)
//   outbox_   mids not yet SENT (sorted when listed)
//   run_, heap_  ids that became evictable (see memory_options), oldest
//             first: run_ an ascending deque for the usual case (messages
//             become final in id order: O(1)), heap_ a min-heap for the
//             rest; stale entries (removed, requeued) are skipped when taken
//   idle_     conversations whose messages were all evicted, in the order
//             they emptied (memory_options::max_idle_conversations); an
//             entry is stale once its conversation holds a message again
//             or is gone, and is skipped when taken
//
// One std::shared_mutex: shared for reads, exclusive for writes.

#include "store/client_store.hpp"
#include "store/client_store_detail.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include <tsl/robin_map.h>
#include <tsl/robin_set.h>

namespace parley::store {

namespace {

using namespace detail;

/// True for an outgoing message of this device: set_status can reach it.
/// Everything else (received, or an outgoing copy from another device of
/// this user, whose id is not its mid) counts as incoming for eviction.
bool own_outgoing(const client_message& m) {
  return m.outgoing && m.id == m.mid;
}

/// True when no status update can come for `m` (memory_options).
bool evictable(const client_message& m) {
  if (!own_outgoing(m))
    return true;
  if ((m.status & status_failure_bit) != 0)
    return true;
  switch (m.status) {
  case status_read:
    return true;
  case status_delivered:
    return (m.flags & flag_read_receipt) == 0;
  case status_sent:
    return (m.flags & (flag_delivery_receipt | flag_read_receipt)) == 0;
  default:
    return false;
  }
}

/// A deque of ids in one vector: appends at the back, removals mostly at
/// the front (evictions), now and then in the middle. std::deque allocates
/// a 512-byte block for its first element, and a client of a random-pairs
/// run holds hundreds of conversations of one or two messages.
class id_queue {
 public:
  using iterator = std::vector<uint64_t>::iterator;
  using const_iterator = std::vector<uint64_t>::const_iterator;
  using const_reverse_iterator =
    std::vector<uint64_t>::const_reverse_iterator;

  bool empty() const { return head_ == v_.size(); }
  size_t size() const { return v_.size() - head_; }
  uint64_t front() const { return v_[head_]; }
  uint64_t back() const { return v_.back(); }
  iterator begin() { return v_.begin() + static_cast<ptrdiff_t>(head_); }
  iterator end() { return v_.end(); }
  const_iterator begin() const {
    return v_.begin() + static_cast<ptrdiff_t>(head_);
  }
  const_iterator end() const { return v_.end(); }
  const_reverse_iterator rbegin() const { return v_.rbegin(); }
  const_reverse_iterator rend() const {
    return v_.rend() - static_cast<ptrdiff_t>(head_);
  }
  void push_back(uint64_t id) { v_.push_back(id); }
  void insert(iterator pos, uint64_t id) { v_.insert(pos, id); }
  void erase(iterator pos) { v_.erase(pos); }
  void pop_front() {
    // The dead prefix is dropped once it is half of the vector: amortised
    // O(1), and never more than twice the ids held.
    if (++head_ * 2 >= v_.size()) {
      v_.erase(v_.begin(), v_.begin() + static_cast<ptrdiff_t>(head_));
      head_ = 0;
    }
  }

 private:
  std::vector<uint64_t> v_;
  size_t head_ = 0; ///< v_[0, head_) were popped.
};

/// Seqs and mids as keys: mixed, so that open addressing over a power of
/// two does not see only their low bits.
struct id_hash {
  size_t operator()(uint64_t k) const noexcept {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
};

struct conversation {
  id_queue ids; ///< Held messages, ascending.
  uint64_t last_id = 0;     ///< Highest id stored (held or evicted).
  uint64_t unread = 0;      ///< Unread incoming messages held.
  /// The last message, once evicted (summary() still shows it).
  /// (A pointer: most conversations never need it, and a node this small
  /// keeps a client's conversations in a few cache lines.)
  std::unique_ptr<client_message> evicted_last;
};

class memory_client_store final : public client_store {
  /// A message lives behind a pointer: it stays put while the table moves
  /// entries, and the table's slots stay small.
  using message_map =
    tsl::robin_map<uint64_t, std::unique_ptr<client_message>, id_hash>;

 public:
  explicit memory_client_store(const memory_options& opts)
    : max_(opts.max_messages), max_idle_(opts.max_idle_conversations) {
    // nop
  }

  result<std::string> device_id() override {
    {
      std::shared_lock lock{mu_};
      if (!device_id_.empty())
        return device_id_;
    }
    std::unique_lock lock{mu_};
    if (device_id_.empty()) {
      auto id = random_hex16();
      if (id.empty())
        return status{status_code::internal,
                      "device_id: the random generator (RAND_bytes) failed"};
      device_id_ = std::move(id);
    }
    return device_id_;
  }

  result<uint64_t> next_id(uint64_t now_ms) override {
    std::unique_lock lock{mu_};
    auto id = peek_id(id_candidate(now_ms));
    if (id)
      last_id_ = *id;
    return id;
  }

  // -- outgoing --------------------------------------------------------------

  status add_outgoing(const client_message& m) override {
    if (auto s = check_new_outgoing("add_outgoing", m); !s)
      return s;
    if (auto s = check_outgoing_ids(m); !s)
      return s;
    std::unique_lock lock{mu_};
    if (msgs_.count(m.id) != 0)
      return exists(m.id);
    client_message rec = m;
    rec.status = status_outbox;
    insert(std::move(rec));
    outbox_.insert(m.mid);
    // Incoming ids continue above every mid, so ids stay unique.
    last_id_ = std::max(last_id_, m.id);
    evict();
    return {};
  }

  status add_new_outgoing(client_message& m, uint64_t now_ms) override {
    if (auto s = check_new_outgoing("add_new_outgoing", m); !s)
      return s;
    std::unique_lock lock{mu_};
    auto id = peek_id(id_candidate(now_ms));
    if (!id)
      return id.error();
    if (msgs_.count(*id) != 0) // cannot happen: ids above last_id_ are free
      return exists(*id);
    last_id_ = *id;
    client_message rec = m;
    rec.id = rec.mid = *id;
    rec.status = status_outbox;
    insert(std::move(rec));
    outbox_.insert(*id);
    evict();
    m.id = m.mid = *id;
    m.status = status_outbox;
    return {};
  }

  result<std::vector<client_message>> outbox() override {
    std::shared_lock lock{mu_};
    std::vector<uint64_t> mids(outbox_.begin(), outbox_.end());
    std::sort(mids.begin(), mids.end());
    std::vector<client_message> out;
    out.reserve(mids.size());
    for (auto mid : mids) {
      auto it = msgs_.find(mid);
      if (it == msgs_.end())
        return broken("outbox: message " + hex_id(mid) +
                      " is queued but not stored");
      out.push_back(*it->second);
    }
    return out;
  }

  result<client_message> set_status(uint64_t mid, uint8_t status, uint64_t seq,
                                    uint64_t ts_ms, uint8_t* before) override {
    if (auto s = check_outgoing_status(status); !s)
      return s;
    std::unique_lock lock{mu_};
    auto it = msgs_.find(mid);
    if (it == msgs_.end() || !it->second->outgoing || it->second->mid != mid)
      return parley::status{status_code::not_found,
                            "set_status: there is no outgoing message " +
                              hex_id(mid)};
    auto& m = *it->second;
    if (before != nullptr)
      *before = m.status;
    bool was_final = evictable(m);
    if (status_advances(m.status, status))
      m.status = status;
    if (seq != 0 && seq != m.seq) {
      if (m.seq != 0)
        unindex_seq(m.seq, m.id);
      by_seq_[seq] = m.id;
      m.seq = seq;
    }
    if (ts_ms != 0)
      m.ts_ms = ts_ms;
    if (status != status_outbox)
      outbox_.erase(mid);
    client_message out = m; // before evict(), which may take `m`
    if (!was_final && evictable(m))
      push_evictable(m.id);
    evict();
    return out;
  }

  result<client_message> requeue(uint64_t mid) override {
    std::unique_lock lock{mu_};
    auto it = msgs_.find(mid);
    if (it == msgs_.end() || !it->second->outgoing || it->second->mid != mid)
      return status{status_code::not_found,
                    "requeue: there is no outgoing message " + hex_id(mid)};
    auto& m = *it->second;
    bool failed = (m.status & status_failure_bit) != 0;
    if (!failed && m.status != status_outbox)
      return status{status_code::failed_precondition,
                    "requeue: message " + hex_id(mid) +
                      " was accepted by the server already"};
    // Its heap entry, if any, goes stale: evict() checks before evicting.
    m.status = status_outbox;
    outbox_.insert(mid);
    return m;
  }

  // -- incoming --------------------------------------------------------------

  result<bool> add_incoming(client_message& m) override {
    if (auto s = check_incoming(m); !s)
      return s;
    std::unique_lock lock{mu_};
    if (m.seq != 0)
      if (auto it = by_seq_.find(m.seq); it != by_seq_.end()) {
        m.id = it->second;
        return false;
      }
    if (auto id = find_mid(m.sender, m.mid); id != 0) {
      m.id = id;
      return false;
    }
    if (m.seq != 0 && m.seq <= evicted_seq_) {
      m.id = 0; // a redelivery of a message evicted since
      return false;
    }
    uint64_t id = m.id;
    if (id != 0) { // history sync chose it
      if (msgs_.count(id) != 0)
        return parley::status{status_code::already_exists,
                              "add_incoming: a message with id " + hex_id(id) +
                                " exists already"};
    } else {
      auto next = peek_id(id_candidate(m.ts_ms));
      if (!next)
        return next.error();
      if (m.outgoing && *next == m.mid) // own_outgoing() must stay false
        next = peek_id(*next + 1);
      if (!next)
        return next.error();
      id = last_id_ = *next;
    }
    client_message rec = m;
    rec.id = id;
    insert(std::move(rec), false); // no held (sender, mid): looked above
    m.id = id;
    evict();
    return true;
  }

  result<uint64_t> cursor() override {
    std::shared_lock lock{mu_};
    return cursor_;
  }

  status set_cursor(uint64_t seq) override {
    std::unique_lock lock{mu_};
    cursor_ = std::max(cursor_, seq);
    return {};
  }

  // -- reading ---------------------------------------------------------------

  status set_receivers(uint64_t mid, uint32_t receivers) override {
    std::unique_lock lock{mu_};
    if (msgs_.count(mid) != 0)
      progress_[mid].receivers = receivers;
    return {};
  }

  result<receipt_counts> member_status(uint64_t mid, const std::string& member,
                                       uint8_t status,
                                       uint64_t ts_ms) override {
    std::unique_lock lock{mu_};
    if (msgs_.count(mid) == 0)
      return parley::status{status_code::not_found,
                            "member_status: there is no message " +
                              hex_id(mid)};
    auto& p = progress_[mid];
    auto& r = p.members[member];
    if (status > r.first) // DELIVERED (2) < READ (3)
      r = {status, ts_ms};
    receipt_counts c;
    c.receivers = p.receivers;
    for (auto& [who, st] : p.members) {
      if (st.first >= 2)
        ++c.delivered;
      if (st.first >= 3)
        ++c.read;
    }
    return c;
  }

  result<std::vector<member_receipt>> member_receipts(uint64_t mid) override {
    std::shared_lock lock{mu_};
    std::vector<member_receipt> out;
    auto it = progress_.find(mid);
    if (it != progress_.end())
      for (auto& [who, st] : it->second.members)
        out.push_back(member_receipt{who, st.first, st.second});
    return out;
  }

  result<uint64_t> find(const std::string& sender, uint64_t mid) override {
    std::shared_lock lock{mu_};
    return find_mid(sender, mid);
  }

  result<client_message> change(uint64_t id, uint16_t add_flags,
                                const std::string& payload,
                                bool* changed) override {
    std::unique_lock lock{mu_};
    auto it = msgs_.find(id);
    if (it == msgs_.end())
      return parley::status{status_code::not_found,
                            "change: there is no message " + hex_id(id)};
    if (changed != nullptr)
      *changed = (it->second->flags | add_flags) != it->second->flags ||
                 it->second->payload != payload;
    it->second->flags |= add_flags;
    it->second->payload = payload;
    return *it->second;
  }

  result<std::optional<client_message>> get(uint64_t id) override {
    std::shared_lock lock{mu_};
    auto it = msgs_.find(id);
    if (it == msgs_.end())
      return std::optional<client_message>{};
    return std::optional<client_message>{*it->second};
  }

  result<std::optional<uint8_t>> status_of(uint64_t id) override {
    std::shared_lock lock{mu_};
    auto it = msgs_.find(id);
    if (it == msgs_.end())
      return std::optional<uint8_t>{};
    return std::optional<uint8_t>{it->second->status};
  }

  result<std::vector<client_message>> read(const std::string& peer,
                                           uint32_t group_id, uint64_t from_id,
                                           size_t count,
                                           read_order order) override {
    if (auto s = check_conversation("read", peer, group_id); !s)
      return s;
    std::vector<client_message> out;
    if (count == 0)
      return out;
    std::shared_lock lock{mu_};
    auto* c = find_conv(peer, group_id);
    if (c == nullptr)
      return out;
    auto& ids = c->ids;
    out.reserve(std::min(count, ids.size()));
    if (order == read_order::newest_first) {
      // Ids strictly below from_id (all for 0), newest first.
      auto end = from_id == 0
                   ? ids.end()
                   : std::lower_bound(ids.begin(), ids.end(), from_id);
      for (auto i = end; i != ids.begin() && out.size() < count;) {
        --i;
        if (auto s = append(out, *i); !s)
          return s;
      }
    } else {
      // Ids strictly above from_id (ids are never 0), oldest first.
      for (auto i = std::upper_bound(ids.begin(), ids.end(), from_id);
           i != ids.end() && out.size() < count; ++i)
        if (auto s = append(out, *i); !s)
          return s;
    }
    return out;
  }

  result<std::vector<conversation_summary>> summary() override {
    std::shared_lock lock{mu_};
    std::vector<conversation_summary> out;
    out.reserve(peers_.size() + groups_.size());
    auto add = [&](const std::string& peer, uint32_t group,
                   const conversation& c) -> status {
      conversation_summary cs;
      cs.peer = peer;
      cs.group_id = group;
      if (c.evicted_last && c.evicted_last->id == c.last_id) {
        cs.last = *c.evicted_last;
      } else {
        auto it = msgs_.find(c.last_id);
        if (it == msgs_.end())
          return broken("conversation: its last message " + hex_id(c.last_id) +
                        " is not stored");
        cs.last = *it->second;
      }
      cs.unread = c.unread;
      out.push_back(std::move(cs));
      return {};
    };
    static const std::string none;
    for (auto& [peer, c] : peers_)
      if (auto s = add(peer, 0, c); !s)
        return s;
    for (auto& [group, c] : groups_)
      if (auto s = add(none, group, c); !s)
        return s;
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return a.last.id > b.last.id;
    });
    return out;
  }

  result<uint64_t> mark_read(const std::string& peer, uint32_t group_id,
                             uint64_t up_to) override {
    if (auto s = check_conversation("mark_read", peer, group_id); !s)
      return s;
    std::unique_lock lock{mu_};
    auto* c = find_conv(peer, group_id);
    if (c == nullptr || c->unread == 0)
      return uint64_t{0};
    // Walk back from the newest message until every unread one was seen.
    uint64_t highest = 0;
    uint64_t seen = 0;
    uint64_t marked = 0;
    for (auto i = c->ids.rbegin(); i != c->ids.rend() && seen < c->unread;
         ++i) {
      auto it = msgs_.find(*i);
      if (it == msgs_.end())
        return broken("conversation index: message " + hex_id(*i) +
                      " is listed but not stored");
      auto& m = *it->second;
      if (!is_unread(m))
        continue;
      ++seen;
      if (up_to != 0 && m.id > up_to)
        continue;
      m.read = true;
      if (m.status == status_received_new)
        m.status = status_received_read;
      highest = std::max(highest, m.seq);
      ++marked;
    }
    c->unread -= std::min(c->unread, marked);
    return highest;
  }

  status remove(uint64_t id) override {
    std::unique_lock lock{mu_};
    auto it = msgs_.find(id);
    if (it == msgs_.end())
      return status{status_code::not_found,
                    "remove: there is no message " + hex_id(id)};
    erase(it, false);
    return {};
  }

  // -- key/value -------------------------------------------------------------

  status kv_put(const std::string& key, const std::string& value) override {
    if (auto s = check_key("kv_put", key); !s)
      return s;
    std::unique_lock lock{mu_};
    kv_[key] = value;
    return {};
  }

  result<std::optional<std::string>> kv_get(const std::string& key) override {
    if (auto s = check_key("kv_get", key); !s)
      return s;
    std::shared_lock lock{mu_};
    auto it = kv_.find(key);
    if (it == kv_.end())
      return std::optional<std::string>{};
    return std::optional<std::string>{it->second};
  }

 private:
  static status broken(const std::string& what) {
    return status{status_code::internal,
                  "memory client store: " + what + " (a bug in Parley)"};
  }

  static status exists(uint64_t id) {
    return status{status_code::already_exists,
                  "a message with id " + hex_id(id) + " exists already"};
  }

  static status check_key(const char* what, const std::string& key) {
    if (key.empty() || key.size() > max_kv_key)
      return status{status_code::invalid_argument,
                    std::string{what} + ": keys are 1 to " +
                      std::to_string(max_kv_key) + " bytes, got " +
                      std::to_string(key.size())};
    return {};
  }

  /// The next id, max(candidate, last + 1), without taking it.
  result<uint64_t> peek_id(uint64_t candidate) const {
    if (last_id_ == std::numeric_limits<uint64_t>::max())
      return ids_used_up("memory client store", last_id_);
    return std::max(candidate, last_id_ + 1);
  }

  conversation* find_conv(const std::string& peer, uint32_t group_id) {
    if (group_id != 0) {
      auto it = groups_.find(group_id);
      return it == groups_.end() ? nullptr : &it->second;
    }
    auto it = peers_.find(peer);
    return it == peers_.end() ? nullptr : &it.value();
  }

  /// The conversation of `m`, made when new; one that was idle (all its
  /// messages evicted) stops being idle, as a message goes in.
  conversation& make_conv(const client_message& m) {
    conversation* c = nullptr;
    bool made = false;
    if (m.group_id != 0) {
      auto [it, fresh] = groups_.try_emplace(m.group_id);
      c = &it->second;
      made = fresh;
    } else {
      auto [it, fresh] = peers_.try_emplace(m.peer);
      c = &it.value();
      made = fresh;
    }
    if (!made && c->ids.empty() && idle_count_ > 0)
      --idle_count_;
    return *c;
  }

  /// `c` (of `m`) just lost its last held message to eviction: it is idle.
  void note_idle(const client_message& m, const conversation& c) {
    ++idle_count_;
    idle_.push_back(idle_entry{c.last_id, m.group_id,
                               m.group_id != 0 ? std::string{} : m.peer});
  }

  /// Forgets the conversations that emptied first while more than
  /// max_idle_ are idle.
  void forget_idle() {
    if (max_idle_ == 0)
      return;
    while (idle_count_ > max_idle_ && !idle_.empty()) {
      auto e = std::move(idle_.front());
      idle_.pop_front();
      auto* c = find_conv(e.peer, e.group_id);
      if (c == nullptr || !c->ids.empty() || c->last_id != e.last_id)
        continue; // stale: it holds a message again, or is gone
      if (e.group_id != 0)
        groups_.erase(e.group_id);
      else
        peers_.erase(e.peer);
      --idle_count_;
    }
    // Stale entries are dropped when they surface; rebuild the queue
    // should they ever outnumber the idle conversations.
    if (idle_.size() > 2 * idle_count_ + 1024) {
      std::vector<idle_entry> v;
      for (auto& [peer, c] : peers_)
        if (c.ids.empty())
          v.push_back(idle_entry{c.last_id, 0, peer});
      for (auto& [group, c] : groups_)
        if (c.ids.empty())
          v.push_back(idle_entry{c.last_id, group, {}});
      std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
        return a.last_id < b.last_id;
      });
      idle_.clear();
      for (auto& e : v)
        idle_.push_back(std::move(e));
      idle_count_ = idle_.size();
    }
  }

  void drop_conv(const client_message& m) {
    if (m.group_id != 0)
      groups_.erase(m.group_id);
    else
      peers_.erase(m.peer);
  }

  /// The held (sender, mid) message's id, 0 when none.
  uint64_t find_mid(const std::string& sender, uint64_t mid) const {
    auto sent_by = [&](uint64_t id) {
      auto it = msgs_.find(id);
      return it != msgs_.end() && it->second->sender == sender;
    };
    auto first = by_mid_.find(mid);
    if (first == by_mid_.end())
      return 0; // (more_mid_ holds a mid only while by_mid_ does)
    if (sent_by(first->second))
      return first->second;
    auto [b, e] = more_mid_.equal_range(mid);
    for (auto i = b; i != e; ++i)
      if (sent_by(i->second))
        return i->second;
    return 0;
  }

  void index_mid(uint64_t mid, uint64_t id) {
    if (!by_mid_.emplace(mid, id).second)
      more_mid_.emplace(mid, id);
  }

  void unindex_mid(uint64_t mid, uint64_t id) {
    auto [b, e] = more_mid_.equal_range(mid);
    auto first = by_mid_.find(mid);
    if (first != by_mid_.end() && first->second == id) {
      if (b == e) {
        by_mid_.erase(first);
      } else { // another message with this mid takes its place
        first.value() = b->second;
        more_mid_.erase(b);
      }
      return;
    }
    for (auto i = b; i != e; ++i)
      if (i->second == id) {
        more_mid_.erase(i);
        return;
      }
  }

  void unindex_seq(uint64_t seq, uint64_t id) {
    if (auto it = by_seq_.find(seq); it != by_seq_.end() && it->second == id)
      by_seq_.erase(it);
  }

  status append(std::vector<client_message>& out, uint64_t id) const {
    auto it = msgs_.find(id);
    if (it == msgs_.end())
      return broken("conversation index: message " + hex_id(id) +
                    " is listed but not stored");
    out.push_back(*it->second);
    return {};
  }

  /// Stores `m` (its id set, not stored yet) with its index entries.
  /// `look_up_mid`: false when the caller knows no held message has its
  /// (sender, mid).
  void insert(client_message&& m, bool look_up_mid = true) {
    uint64_t id = m.id;
    if (m.seq != 0)
      by_seq_[m.seq] = id;
    if (!look_up_mid || find_mid(m.sender, m.mid) == 0)
      index_mid(m.mid, id);
    auto& c = make_conv(m);
    if (c.ids.empty() || c.ids.back() < id)
      c.ids.push_back(id);
    else
      c.ids.insert(std::lower_bound(c.ids.begin(), c.ids.end(), id), id);
    if (id > c.last_id) {
      c.last_id = id;
      c.evicted_last.reset();
    }
    if (is_unread(m))
      ++c.unread;
    bool final_now = evictable(m);
    msgs_.emplace(id, std::make_unique<client_message>(std::move(m)));
    if (final_now)
      push_evictable(id);
  }

  /// Removes a held message and its index entries. `evicting`: the cap
  /// takes it (its conversation keeps it as its last message if it was);
  /// otherwise remove() (the conversation falls back to its previous
  /// message, and goes when it holds none).
  void erase(message_map::iterator it, bool evicting) {
    auto& m = *it->second;
    uint64_t id = m.id;
    if (m.seq != 0)
      unindex_seq(m.seq, id);
    unindex_mid(m.mid, id);
    if (m.outgoing) {
      outbox_.erase(id);
      progress_.erase(id);
    }
    auto* c = find_conv(m.peer, m.group_id);
    if (c != nullptr) {
      if (!c->ids.empty() && c->ids.front() == id) { // eviction, usually
        c->ids.pop_front();
      } else {
        auto pos = std::lower_bound(c->ids.begin(), c->ids.end(), id);
        if (pos != c->ids.end() && *pos == id)
          c->ids.erase(pos);
      }
      if (is_unread(m) && c->unread > 0)
        --c->unread;
      if (evicting) {
        if (!own_outgoing(m))
          evicted_seq_ = std::max(evicted_seq_, m.seq);
        if (c->last_id == id)
          c->evicted_last = std::move(it.value()); // no copy
        if (c->ids.empty())
          note_idle(m, *c);
      } else if (c->ids.empty()) {
        drop_conv(m); // the conversation is empty now
      } else if (c->last_id == id) {
        c->last_id = c->ids.back();
      }
    }
    msgs_.erase(it);
  }

  void push_evictable(uint64_t id) {
    if (max_ == 0)
      return;
    if (run_.empty() || run_.back() <= id) {
      run_.push_back(id);
    } else {
      heap_.push_back(id);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
    }
  }

  /// Evicts the oldest evictable messages while more than max_ are held.
  void evict() {
    if (max_ == 0)
      return;
    while (msgs_.size() > max_ && !(run_.empty() && heap_.empty())) {
      uint64_t id = 0;
      if (!run_.empty() && (heap_.empty() || run_.front() <= heap_.front())) {
        id = run_.front();
        run_.pop_front();
      } else {
        std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
        id = heap_.back();
        heap_.pop_back();
      }
      auto it = msgs_.find(id);
      if (it != msgs_.end() && evictable(*it->second))
        erase(it, true);
    }
    forget_idle();
    // Stale entries (removed, requeued, pushed twice) are dropped when they
    // surface; rebuild the heap should they ever outnumber the messages.
    if (run_.size() + heap_.size() > 2 * msgs_.size() + 1024) {
      run_.clear();
      heap_.clear();
      for (auto& [id, m] : msgs_)
        if (evictable(*m))
          heap_.push_back(id);
      std::sort(heap_.begin(), heap_.end());
      run_.assign(heap_.begin(), heap_.end());
      heap_.clear();
    }
  }

  const size_t max_;      ///< memory_options::max_messages (0: no cap).
  const size_t max_idle_; ///< memory_options::max_idle_conversations.
  /// A conversation that became idle (idle_): which, and its last id then.
  struct idle_entry {
    uint64_t last_id = 0;
    uint32_t group_id = 0;
    std::string peer; ///< Empty for a group.
  };
  std::deque<idle_entry> idle_;
  size_t idle_count_ = 0; ///< Conversations idle now (idle_ has stale ones).
  mutable std::shared_mutex mu_;
  std::string device_id_;
  uint64_t last_id_ = 0; ///< Highest id handed out.
  uint64_t cursor_ = 0;
  uint64_t evicted_seq_ = 0; ///< Highest seq of an evicted incoming message.
  // Open addressing (no node per entry, no modulo by a prime): with
  // thousands of clients in one process these lookups miss the cache, and
  // std::unordered_map's were the largest part of parley-sim's own CPU.
  message_map msgs_;
  tsl::robin_map<std::string, conversation, std::hash<std::string>,
                 std::equal_to<std::string>,
                 std::allocator<std::pair<std::string, conversation>>,
                 true> // hash stored: probes compare hashes, not strings
    peers_;
  std::unordered_map<uint32_t, conversation> groups_;
  tsl::robin_map<uint64_t, uint64_t, id_hash> by_seq_;
  tsl::robin_map<uint64_t, uint64_t, id_hash> by_mid_;
  std::unordered_multimap<uint64_t, uint64_t> more_mid_;
  /// Group messages sent from here: receivers and each member's status.
  struct progress {
    uint32_t receivers = 0;
    std::map<std::string, std::pair<uint8_t, uint64_t>> members;
  };
  std::unordered_map<uint64_t, progress> progress_;
  tsl::robin_set<uint64_t, id_hash> outbox_;
  std::deque<uint64_t> run_;   ///< Evictable ids, ascending.
  std::vector<uint64_t> heap_; ///< Min-heap of the other evictable ids.
  std::unordered_map<std::string, std::string> kv_;
};

} // namespace

std::unique_ptr<client_store>
client_store::open_memory(const memory_options& opts) {
  return std::make_unique<memory_client_store>(opts);
}

} // namespace parley::store
