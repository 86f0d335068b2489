// The client_store interface's shared parts (store/client_store_detail.hpp)
// and its LMDB backend, client_store::open.

#include "store/client_store.hpp"

#include "store/client_store_detail.hpp"
#include "store/keys.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <limits>

namespace parley::store {

// -- shared by both backends
// -------------------------------------------------------

namespace detail {

std::string hex_id(uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string out = "0x";
  bool started = false;
  for (int i = 60; i >= 0; i -= 4) {
    auto d = (v >> i) & 15;
    if (d != 0 || started || i == 0) {
      out += digits[d];
      started = true;
    }
  }
  return out;
}

std::string random_hex16() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof(raw)) != 1)
    return {};
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

status check_conversation(const char* what, std::string_view peer,
                          uint32_t group_id) {
  if (group_id != 0 && !peer.empty())
    return status{status_code::invalid_argument,
                  std::string{what} + ": both peer '" + std::string{peer} +
                    "' and group " + std::to_string(group_id) +
                    " are set; a conversation is a peer (1:1) or a group"};
  if (group_id == 0 && peer.empty())
    return status{status_code::invalid_argument,
                  std::string{what} +
                    ": neither peer nor group_id is set; a conversation is a "
                    "peer (1:1) or a group"};
  if (peer.size() > max_name)
    return status{status_code::invalid_argument,
                  std::string{what} + ": peer '" + std::string{peer} +
                    "' is longer than " + std::to_string(max_name) + " bytes"};
  return {};
}

status check_outgoing_ids(const client_message& m) {
  if (m.mid == 0 || m.id != m.mid)
    return status{status_code::invalid_argument,
                  "add_outgoing: an outgoing message needs id == mid != 0 "
                  "(from next_id()), got id " +
                    hex_id(m.id) + " and mid " + hex_id(m.mid)};
  return {};
}

status check_new_outgoing(const char* what, const client_message& m) {
  if (!m.outgoing)
    return status{status_code::invalid_argument,
                  std::string{what} + ": message " + hex_id(m.mid) +
                    " is not outgoing (store received messages with "
                    "add_incoming)"};
  if (auto s = check_conversation(what, m.peer, m.group_id); !s)
    return s;
  if (m.sender.size() > max_name)
    return status{status_code::invalid_argument,
                  std::string{what} + ": sender is longer than " +
                    std::to_string(max_name) + " bytes"};
  return {};
}

status check_incoming(const client_message& m) {
  if (auto s = check_conversation("add_incoming", m.peer, m.group_id); !s)
    return s;
  if (m.sender.empty())
    return status{status_code::invalid_argument,
                  "add_incoming: message " + hex_id(m.mid) + " has no sender"};
  if (m.sender.size() > max_name)
    return status{status_code::invalid_argument,
                  "add_incoming: sender is longer than " +
                    std::to_string(max_name) + " bytes"};
  return {};
}

status check_outgoing_status(uint8_t s) {
  if (s <= status_read || (s & status_failure_bit) != 0)
    return {};
  return status{status_code::invalid_argument,
                "set_status: " + hex_id(s) +
                  " is not a status of an outgoing message (OUTBOX, "
                  "SENT, DELIVERED, READ or a failure >= 0x80)"};
}

bool status_advances(uint8_t cur, uint8_t next) {
  if (next == cur || (cur & status_failure_bit) != 0)
    return false;
  if ((next & status_failure_bit) != 0)
    return cur <= status_sent;
  return next > cur;
}

status ids_used_up(const std::string& where, uint64_t last) {
  return status{status_code::resource_exhausted,
                where + ": local ids are used up (the last one was " +
                  hex_id(last) + ")"};
}

} // namespace detail

client_store::~client_store() = default;

// -- the LMDB backend
// -------------------------------------------------------------

// Tables (named LMDB databases). Integers in keys are big-endian so that
// byte order is numeric order (store/keys.hpp); values are little-endian
// where they are not keys of something else.
//
//   meta     "format" -> u32 (check_format) ; "device_id" -> 32 hex digits ;
//            "next_id" -> u64 highest local id handed out ;
//            "cursor" -> u64 highest server seq stored (set_cursor)
//   messages id -> message (see encode_message)
//   conv     conversation key, id -> u64 id  (a conversation's messages in
//            the order they were stored: ids increase)
//   convs    conversation key -> u64 last id, u64 unread count
//   by_seq   seq -> u64 id  (dedup of incoming by server log seq)
//   by_mid   sender \0 mid -> u64 id  (dedup of incoming by the sender's id)
//   outbox   mid -> ""  (outgoing messages not yet SENT, oldest first)
//   receipts mid -> u32 receivers  (a group message sent from here), and
//            mid, member -> u8 status, u64 ts  (each member's receipt)
//   kv       key -> value
//
// A conversation key is 'p', u8 length, peer for a 1:1 conversation and 'g',
// u32 group id for a group. The length byte keeps conversations apart whose
// peers are prefixes of one another ("bob" and "bobby").

namespace {

using namespace detail;

constexpr uint8_t message_version = 1;

// -- little-endian values
// ----------------------------------------------------------

void put_le64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}

void put_le32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}

void put_le16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}

uint64_t get_le64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint32_t get_le32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint16_t get_le16(const char* p) {
  return static_cast<uint16_t>(static_cast<unsigned char>(p[0]) |
                               (static_cast<unsigned char>(p[1]) << 8));
}

std::string le64(uint64_t v) {
  std::string s;
  put_le64(s, v);
  return s;
}

std::string be64(uint64_t v) {
  std::string s;
  put_be64(s, v);
  return s;
}

// -- messages
// ------------------------------------------------------------------------

constexpr uint8_t bit_outgoing = 0x01;
constexpr uint8_t bit_read = 0x02;

/// Fixed part of an encoded message, before the peer.
constexpr size_t message_fixed = 47;

/// Message layout: u8 version, u64 mid, u64 seq, u64 in_reply_to, u64 ts_ms,
/// u32 group_id, u32 expiry_s, u16 kind, u16 flags, u8 status, u8 bits
/// (outgoing, read), u8 peer length, peer, u8 sender length, sender, payload.
/// The id is the key.
std::string encode_message(const client_message& m) {
  std::string v;
  v.reserve(message_fixed + 2 + m.peer.size() + m.sender.size() +
            m.payload.size());
  v.push_back(static_cast<char>(message_version));
  put_le64(v, m.mid);
  put_le64(v, m.seq);
  put_le64(v, m.in_reply_to);
  put_le64(v, m.ts_ms);
  put_le32(v, m.group_id);
  put_le32(v, m.expiry_s);
  put_le16(v, m.kind);
  put_le16(v, m.flags);
  v.push_back(static_cast<char>(m.status));
  v.push_back(static_cast<char>((m.outgoing ? bit_outgoing : 0) |
                                (m.read ? bit_read : 0)));
  v.push_back(static_cast<char>(m.peer.size()));
  v.append(m.peer);
  v.push_back(static_cast<char>(m.sender.size()));
  v.append(m.sender);
  v.append(m.payload);
  return v;
}

bool decode_message(std::string_view v, uint64_t id, client_message& m) {
  if (v.size() < message_fixed + 2 ||
      static_cast<uint8_t>(v[0]) != message_version)
    return false;
  const char* p = v.data();
  m.id = id;
  m.mid = get_le64(p + 1);
  m.seq = get_le64(p + 9);
  m.in_reply_to = get_le64(p + 17);
  m.ts_ms = get_le64(p + 25);
  m.group_id = get_le32(p + 33);
  m.expiry_s = get_le32(p + 37);
  m.kind = get_le16(p + 41);
  m.flags = get_le16(p + 43);
  m.status = static_cast<uint8_t>(p[45]);
  auto bits = static_cast<uint8_t>(p[46]);
  m.outgoing = (bits & bit_outgoing) != 0;
  m.read = (bits & bit_read) != 0;
  size_t pos = message_fixed;
  size_t plen = static_cast<uint8_t>(v[pos++]);
  if (v.size() < pos + plen + 1)
    return false;
  m.peer.assign(p + pos, plen);
  pos += plen;
  size_t slen = static_cast<uint8_t>(v[pos++]);
  if (v.size() < pos + slen)
    return false;
  m.sender.assign(p + pos, slen);
  pos += slen;
  m.payload.assign(p + pos, v.size() - pos);
  return true;
}

// -- conversations
// -------------------------------------------------------------------

/// The conversation key of (peer, group_id). REQUIRES: check_conversation.
std::string conversation_key(std::string_view peer, uint32_t group_id) {
  std::string k;
  if (group_id != 0) {
    k.push_back('g');
    put_be32(k, group_id);
  } else {
    k.push_back('p');
    k.push_back(static_cast<char>(peer.size()));
    k.append(peer);
  }
  return k;
}

/// Splits a conversation key into (peer, group_id); false when malformed.
bool decode_conversation_key(std::string_view k, std::string& peer,
                             uint32_t& group_id) {
  if (k.size() == 5 && k[0] == 'g') {
    peer.clear();
    group_id = get_be32(k.data() + 1);
    return group_id != 0;
  }
  if (k.size() >= 2 && k[0] == 'p' &&
      k.size() == size_t{2} + static_cast<uint8_t>(k[1])) {
    peer.assign(k.substr(2));
    group_id = 0;
    return !peer.empty();
  }
  return false;
}

/// conv key of the message `id` in the conversation `ck`.
std::string conv_entry(const std::string& ck, uint64_t id) {
  std::string k = ck;
  put_be64(k, id);
  return k;
}

/// by_mid key of (sender, mid).
std::string mid_key(std::string_view sender, uint64_t mid) {
  std::string k;
  k.reserve(sender.size() + 9);
  k.append(sender);
  k.push_back('\0');
  put_be64(k, mid);
  return k;
}

/// Summary record of a conversation.
struct conv_state {
  uint64_t last = 0;   // Highest id in the conversation.
  uint64_t unread = 0; // Incoming messages not read.
};

std::string encode_conv_state(const conv_state& c) {
  std::string v;
  put_le64(v, c.last);
  put_le64(v, c.unread);
  return v;
}

bool decode_conv_state(std::string_view v, conv_state& c) {
  if (v.size() != 16)
    return false;
  c.last = get_le64(v.data());
  c.unread = get_le64(v.data() + 8);
  return true;
}

/// The LMDB backend: every operation one transaction.
class lmdb_client_store final : public client_store {
 public:
  result<std::string> device_id() override;
  result<uint64_t> next_id(uint64_t now_ms) override;
  status add_outgoing(const client_message& m) override;
  status add_new_outgoing(client_message& m, uint64_t now_ms) override;
  result<std::vector<client_message>> outbox() override;
  result<client_message> set_status(uint64_t mid, uint8_t status, uint64_t seq,
                                    uint64_t ts_ms, uint8_t* before) override;
  result<client_message> requeue(uint64_t mid) override;
  result<bool> add_incoming(client_message& m) override;
  result<uint64_t> cursor() override;
  status set_cursor(uint64_t seq) override;
  result<std::optional<client_message>> get(uint64_t id) override;
  result<std::optional<uint8_t>> status_of(uint64_t id) override;
  result<std::vector<client_message>> read(const std::string& peer,
                                           uint32_t group_id, uint64_t from_id,
                                           size_t count,
                                           read_order order) override;
  status set_receivers(uint64_t mid, uint32_t receivers) override;
  result<receipt_counts> member_status(uint64_t mid, const std::string& member,
                                       uint8_t status, uint64_t ts_ms) override;
  result<std::vector<member_receipt>> member_receipts(uint64_t mid) override;
  result<uint64_t> find(const std::string& sender, uint64_t mid) override;
  result<client_message> change(uint64_t id, uint16_t add_flags,
                                const std::string& payload,
                                bool* changed) override;
  result<std::vector<conversation_summary>> summary() override;
  result<uint64_t> mark_read(const std::string& peer, uint32_t group_id,
                             uint64_t up_to) override;
  status remove(uint64_t id) override;
  status kv_put(const std::string& key, const std::string& value) override;
  result<std::optional<std::string>> kv_get(const std::string& key) override;

  std::unique_ptr<env> e;
  dbi meta, messages, conv, convs, by_seq, by_mid, outbox_db, kv, receipts;

 private:
  status corrupt(const std::string& what) const {
    return status{status_code::corruption,
                  "corrupt " + what + " in client store '" + e->path() + "'"};
  }

  /// A u64 of `meta` (little-endian); 0 when absent.
  result<uint64_t> meta_u64(txn& t, std::string_view name) const {
    auto v = t.get(meta, name);
    if (!v)
      return v.error();
    if (!*v)
      return uint64_t{0};
    if ((*v)->size() != 8)
      return corrupt("meta record '" + std::string{name} + "'");
    return get_le64((*v)->data());
  }

  /// The message `id`, or an empty optional.
  result<std::optional<client_message>> load(txn& t, uint64_t id) const {
    auto v = t.get(messages, be64(id));
    if (!v)
      return v.error();
    if (!*v)
      return std::optional<client_message>{};
    client_message m;
    if (!decode_message(**v, id, m))
      return corrupt("message " + hex_id(id));
    return std::optional<client_message>{std::move(m)};
  }

  /// The message `id`; not_found ("<what>: there is no message <id>")
  /// when absent.
  result<client_message> load_existing(txn& t, uint64_t id,
                                       const char* what) const {
    auto m = load(t, id);
    if (!m)
      return m.error();
    if (!*m)
      return parley::status{status_code::not_found,
                            std::string{what} + ": there is no message " +
                              hex_id(id)};
    return std::move(**m);
  }

  /// Calls fn(key, value) for each receipts row of the group message
  /// `mid`: its receivers row (key of 8 bytes), then a row per member.
  template<class Fn>
  status scan_receipts(txn& t, uint64_t mid, Fn fn) {
    auto c = t.open_cursor(receipts);
    if (!c)
      return c.error();
    auto prefix = be64(mid);
    if (auto s = c->seek(prefix); !s)
      return s;
    while (c->valid() && c->key().substr(0, 8) == prefix) {
      fn(c->key(), c->value());
      if (auto s = c->next(); !s)
        return s;
    }
    return {};
  }

  /// Drops the receipts recorded for the group message `mid`.
  status delete_receipts(txn& t, uint64_t mid) {
    return delete_prefix(t, receipts, be64(mid));
  }

  /// An id (u64 LE value) of an index table, or 0 when absent.
  result<uint64_t> index_get(txn& t, dbi db, std::string_view key,
                             const char* table) const {
    auto v = t.get(db, key);
    if (!v)
      return v.error();
    if (!*v)
      return uint64_t{0};
    if ((*v)->size() != 8)
      return corrupt(std::string{table} + " entry");
    return get_le64((*v)->data());
  }

  /// Deletes `key` from `db` when it maps to `id`.
  status index_del(txn& t, dbi db, std::string_view key, uint64_t id,
                   const char* table) {
    auto cur = index_get(t, db, key, table);
    if (!cur)
      return cur.error();
    if (*cur != id)
      return {};
    return t.del(db, key);
  }

  result<std::optional<conv_state>> get_conv(txn& t,
                                             const std::string& ck) const {
    auto v = t.get(convs, ck);
    if (!v)
      return v.error();
    if (!*v)
      return std::optional<conv_state>{};
    conv_state c;
    if (!decode_conv_state(**v, c))
      return corrupt("conversation record");
    return std::optional<conv_state>{c};
  }

  /// Raises the highest id handed out to at least `id`.
  status raise_last_id(txn& t, uint64_t id) {
    auto last = meta_u64(t, "next_id");
    if (!last)
      return last.error();
    if (*last >= id)
      return {};
    return t.put(meta, "next_id", le64(id));
  }

  /// Hands out the next id: max(candidate, last + 1).
  result<uint64_t> take_id(txn& t, uint64_t candidate) {
    auto last = meta_u64(t, "next_id");
    if (!last)
      return last.error();
    if (*last == std::numeric_limits<uint64_t>::max())
      return ids_used_up("client store '" + e->path() + "'", *last);
    uint64_t id = std::max(candidate, *last + 1);
    if (auto s = t.put(meta, "next_id", le64(id)); !s)
      return s;
    return id;
  }

  /// Stores a new message `m` (its id set) with its conversation entries.
  status insert(txn& t, const client_message& m) {
    auto key = be64(m.id);
    auto s = t.put(messages, key, encode_message(m), put_flags::no_overwrite);
    if (s.code() == status_code::already_exists)
      return status{status_code::already_exists,
                    "a message with id " + hex_id(m.id) + " exists already"};
    if (!s)
      return s;
    auto ck = conversation_key(m.peer, m.group_id);
    if (auto s2 = t.put(conv, conv_entry(ck, m.id), le64(m.id)); !s2)
      return s2;
    auto c = get_conv(t, ck);
    if (!c)
      return c.error();
    conv_state st = c->value_or(conv_state{});
    st.last = std::max(st.last, m.id);
    if (is_unread(m))
      ++st.unread;
    if (auto s2 = t.put(convs, ck, encode_conv_state(st)); !s2)
      return s2;
    if (m.seq != 0)
      if (auto s2 = t.put(by_seq, be64(m.seq), le64(m.id)); !s2)
        return s2;
    auto mk = mid_key(m.sender, m.mid);
    auto old = index_get(t, by_mid, mk, "by_mid");
    if (!old)
      return old.error();
    if (*old == 0)
      if (auto s2 = t.put(by_mid, mk, le64(m.id)); !s2)
        return s2;
    return {};
  }

  /// The last id of conversation `ck` below `id`, 0 when none.
  result<uint64_t> last_before(txn& t, const std::string& ck, uint64_t id) {
    if (id == 0)
      return uint64_t{0};
    auto c = t.open_cursor(conv);
    if (!c)
      return c.error();
    if (auto s = c->seek_for_prev(conv_entry(ck, id - 1)); !s)
      return s;
    if (!c->valid() || c->key().size() != ck.size() + 8 ||
        c->key().substr(0, ck.size()) != ck)
      return uint64_t{0};
    return get_be64(c->key().data() + ck.size());
  }
};

} // namespace

// -- lmdb_client_store
// -------------------------------------------------------------------------

result<std::unique_ptr<client_store>>
client_store::open(const std::string& dir, const env_options& opts) {
  auto p = std::make_unique<lmdb_client_store>();
  auto e = env::open(dir, opts);
  if (!e)
    return e.error();
  p->e = std::move(*e);
  auto st = p->e->write([&](txn& t) -> status {
    if (auto s = open_tables(t, {{&p->meta, "meta"},
                                 {&p->messages, "messages"},
                                 {&p->conv, "conv"},
                                 {&p->convs, "convs"},
                                 {&p->by_seq, "by_seq"},
                                 {&p->by_mid, "by_mid"},
                                 {&p->outbox_db, "outbox"},
                                 {&p->kv, "kv"},
                                 {&p->receipts, "receipts"}});
        !s)
      return s;
    return check_format(t, p->meta, "format", client_format_version);
  });
  if (!st)
    return st;
  return std::unique_ptr<client_store>(std::move(p));
}

result<std::string> lmdb_client_store::device_id() {
  {
    auto t = e->begin_read();
    if (!t)
      return t.error();
    auto v = t->get(meta, "device_id");
    if (!v)
      return v.error();
    if (*v)
      return std::string{**v};
  }
  std::string id;
  auto st = e->write([&](txn& t) -> status {
    auto v = t.get(meta, "device_id");
    if (!v)
      return v.error();
    if (*v) { // made by another thread meanwhile
      id.assign(**v);
      return {};
    }
    id = random_hex16();
    if (id.empty())
      return status{status_code::internal,
                    "device_id: the random generator (RAND_bytes) failed"};
    return t.put(meta, "device_id", id);
  });
  if (!st)
    return st;
  return id;
}

result<uint64_t> lmdb_client_store::next_id(uint64_t now_ms) {
  uint64_t id = 0;
  auto st = e->write([&](txn& t) -> status {
    auto r = take_id(t, id_candidate(now_ms));
    if (!r)
      return r.error();
    id = *r;
    return {};
  });
  if (!st)
    return st;
  return id;
}

// -- outgoing
// ------------------------------------------------------------------------

status lmdb_client_store::add_outgoing(const client_message& m) {
  if (auto s = check_new_outgoing("add_outgoing", m); !s)
    return s;
  if (auto s = check_outgoing_ids(m); !s)
    return s;
  client_message rec = m;
  rec.status = status_outbox;
  return e->write([&](txn& t) -> status {
    if (auto s = insert(t, rec); !s)
      return s;
    if (auto s = t.put(outbox_db, be64(rec.mid), ""); !s)
      return s;
    // Incoming ids continue above every mid, so ids stay unique.
    return raise_last_id(t, rec.id);
  });
}

status lmdb_client_store::add_new_outgoing(client_message& m, uint64_t now_ms) {
  if (auto s = check_new_outgoing("add_new_outgoing", m); !s)
    return s;
  // A copy, so that a rerun (the map grew) and a failure leave `m` as given.
  client_message rec = m;
  rec.status = status_outbox;
  auto st = e->write([&](txn& t) -> status {
    auto id = take_id(t, id_candidate(now_ms));
    if (!id)
      return id.error();
    rec.id = rec.mid = *id;
    if (auto s = insert(t, rec); !s)
      return s;
    return t.put(outbox_db, be64(rec.mid), "");
  });
  if (!st)
    return st;
  m.id = m.mid = rec.id;
  m.status = status_outbox;
  return {};
}

result<std::vector<client_message>> lmdb_client_store::outbox() {
  auto t = e->begin_read();
  if (!t)
    return t.error();
  auto c = t->open_cursor(outbox_db);
  if (!c)
    return c.error();
  std::vector<client_message> out;
  status s;
  for (s = c->first(); s && c->valid(); s = c->next()) {
    if (c->key().size() != 8)
      return corrupt("outbox entry");
    auto mid = get_be64(c->key().data());
    auto m = load(*t, mid);
    if (!m)
      return m.error();
    if (!*m)
      return corrupt("outbox: message " + hex_id(mid) +
                     " is queued but not stored");
    out.push_back(std::move(**m));
  }
  if (!s)
    return s;
  return out;
}

result<client_message> lmdb_client_store::requeue(uint64_t mid) {
  client_message out;
  auto st = e->write([&](txn& t) -> parley::status {
    auto m = load(t, mid);
    if (!m)
      return m.error();
    if (!*m || !(*m)->outgoing || (*m)->mid != mid)
      return parley::status{status_code::not_found,
                            "requeue: there is no outgoing message " +
                              hex_id(mid)};
    out = std::move(**m);
    bool failed = (out.status & status_failure_bit) != 0;
    if (!failed && out.status != status_outbox)
      return parley::status{status_code::failed_precondition,
                            "requeue: message " + hex_id(mid) +
                              " was accepted by the server already"};
    out.status = status_outbox;
    if (auto s = t.put(messages, be64(out.id), encode_message(out)); !s)
      return s;
    return t.put(outbox_db, be64(mid), "");
  });
  if (!st)
    return st;
  return out;
}

result<client_message>
lmdb_client_store::set_status(uint64_t mid, uint8_t status, uint64_t seq,
                              uint64_t ts_ms, uint8_t* before) {
  if (auto s = check_outgoing_status(status); !s)
    return s;
  client_message out;
  auto st = e->write([&](txn& t) -> parley::status {
    auto m = load(t, mid);
    if (!m)
      return m.error();
    if (!*m || !(*m)->outgoing || (*m)->mid != mid)
      return parley::status{status_code::not_found,
                            "set_status: there is no outgoing message " +
                              hex_id(mid)};
    out = std::move(**m);
    if (before != nullptr)
      *before = out.status;
    bool changed = false;
    if (status_advances(out.status, status)) {
      out.status = status;
      changed = true;
    }
    if (seq != 0 && seq != out.seq) {
      if (out.seq != 0)
        if (auto s = index_del(t, by_seq, be64(out.seq), out.id, "by_seq"); !s)
          return s;
      if (auto s = t.put(by_seq, be64(seq), le64(out.id)); !s)
        return s;
      out.seq = seq;
      changed = true;
    }
    if (ts_ms != 0 && ts_ms != out.ts_ms) {
      out.ts_ms = ts_ms;
      changed = true;
    }
    if (changed)
      if (auto s = t.put(messages, be64(out.id), encode_message(out)); !s)
        return s;
    if (status != status_outbox) {
      auto s = t.del(outbox_db, be64(mid));
      if (!s && s.code() != status_code::not_found)
        return s;
    }
    return {};
  });
  if (!st)
    return st;
  return out;
}

// -- incoming
// ------------------------------------------------------------------------

result<bool> lmdb_client_store::add_incoming(client_message& m) {
  if (auto s = check_incoming(m); !s)
    return s;
  uint64_t preset = m.id; // history sync chose it
  uint64_t id = 0;
  bool fresh = false;
  auto st = e->write([&](txn& t) -> status {
    fresh = false;
    if (m.seq != 0) {
      auto dup = index_get(t, by_seq, be64(m.seq), "by_seq");
      if (!dup)
        return dup.error();
      if (*dup != 0) {
        id = *dup;
        return {};
      }
    }
    auto dup = index_get(t, by_mid, mid_key(m.sender, m.mid), "by_mid");
    if (!dup)
      return dup.error();
    if (*dup != 0) {
      id = *dup;
      return {};
    }
    if (preset != 0) {
      id = preset;
    } else {
      auto r = take_id(t, id_candidate(m.ts_ms));
      if (!r)
        return r.error();
      // Another device's outgoing message: its mid came from that device's
      // clock, so the id drawn here may equal it by chance. It must not:
      // `outgoing && id == mid` is what marks this device's own messages.
      if (m.outgoing && *r == m.mid)
        r = take_id(t, *r + 1);
      if (!r)
        return r.error();
      id = *r;
    }
    client_message rec = m;
    rec.id = id;
    fresh = true;
    return insert(t, rec);
  });
  if (!st)
    return st;
  m.id = id;
  return fresh;
}

status lmdb_client_store::set_receivers(uint64_t mid, uint32_t receivers) {
  return e->write([&](txn& t) -> parley::status {
    std::string v;
    put_le32(v, receivers);
    return t.put(this->receipts, be64(mid), v);
  });
}

result<receipt_counts>
lmdb_client_store::member_status(uint64_t mid, const std::string& member,
                                 uint8_t status, uint64_t ts_ms) {
  receipt_counts out;
  auto st = e->write([&](txn& t) -> parley::status {
    if (auto m = load_existing(t, mid, "member_status"); !m)
      return m.error();
    auto key = be64(mid) + member;
    auto old = t.get(this->receipts, key);
    if (!old)
      return old.error();
    uint8_t before = *old && !(*old)->empty() ? uint8_t((**old)[0]) : 0;
    if (status > before) { // DELIVERED (2) < READ (3)
      std::string v(1, static_cast<char>(status));
      put_le64(v, ts_ms);
      if (auto s = t.put(this->receipts, key, v); !s)
        return s;
    }
    out = receipt_counts{};
    return scan_receipts(t, mid, [&](std::string_view key,
                                     std::string_view value) {
      if (key.size() == 8) {
        if (value.size() >= 4)
          out.receivers = get_le32(value.data());
      } else if (!value.empty()) {
        auto v = static_cast<uint8_t>(value[0]);
        out.delivered += v >= 2 ? 1 : 0;
        out.read += v >= 3 ? 1 : 0;
      }
    });
  });
  if (!st)
    return st;
  return out;
}

result<std::vector<member_receipt>>
lmdb_client_store::member_receipts(uint64_t mid) {
  std::vector<member_receipt> out;
  auto t = e->begin_read();
  if (!t)
    return t.error();
  auto st = scan_receipts(*t, mid, [&](std::string_view key,
                                       std::string_view value) {
    if (key.size() > 8 && value.size() >= 9)
      out.push_back(member_receipt{std::string{key.substr(8)},
                                   static_cast<uint8_t>(value[0]),
                                   get_le64(value.data() + 1)});
  });
  if (!st)
    return st;
  return out;
}

result<uint64_t> lmdb_client_store::find(const std::string& sender,
                                         uint64_t mid) {
  auto t = e->begin_read();
  if (!t)
    return t.error();
  return index_get(*t, by_mid, mid_key(sender, mid), "by_mid");
}

result<client_message> lmdb_client_store::change(uint64_t id,
                                                 uint16_t add_flags,
                                                 const std::string& payload,
                                                 bool* changed) {
  client_message out;
  auto st = e->write([&](txn& t) -> parley::status {
    auto m = load_existing(t, id, "change");
    if (!m)
      return m.error();
    out = std::move(*m);
    bool differs =
      (out.flags | add_flags) != out.flags || out.payload != payload;
    if (changed != nullptr)
      *changed = differs;
    if (!differs)
      return {};
    out.flags |= add_flags;
    out.payload = payload;
    return t.put(messages, be64(out.id), encode_message(out));
  });
  if (!st)
    return st;
  return out;
}

result<uint64_t> lmdb_client_store::cursor() {
  auto t = e->begin_read();
  if (!t)
    return t.error();
  return meta_u64(*t, "cursor");
}

status lmdb_client_store::set_cursor(uint64_t seq) {
  return e->write([&](txn& t) -> status {
    auto cur = meta_u64(t, "cursor");
    if (!cur)
      return cur.error();
    if (seq <= *cur)
      return {};
    return t.put(meta, "cursor", le64(seq));
  });
}

// -- reading
// -------------------------------------------------------------------------

result<std::optional<client_message>> lmdb_client_store::get(uint64_t id) {
  auto t = e->begin_read();
  if (!t)
    return t.error();
  return load(*t, id);
}

result<std::optional<uint8_t>> lmdb_client_store::status_of(uint64_t id) {
  auto m = get(id); // one decode: the LMDB backend has no cheaper path
  if (!m)
    return m.error();
  if (!*m)
    return std::optional<uint8_t>{};
  return std::optional<uint8_t>{(*m)->status};
}

result<std::vector<client_message>>
lmdb_client_store::read(const std::string& peer, uint32_t group_id,
                        uint64_t from_id, size_t count, read_order order) {
  if (auto s = check_conversation("read", peer, group_id); !s)
    return s;
  std::vector<client_message> out;
  if (count == 0)
    return out;
  bool backward = order == read_order::newest_first;
  if (!backward && from_id == std::numeric_limits<uint64_t>::max())
    return out;
  auto t = e->begin_read();
  if (!t)
    return t.error();
  auto c = t->open_cursor(conv);
  if (!c)
    return c.error();
  auto ck = conversation_key(peer, group_id);
  status s;
  if (backward)
    s = c->seek_for_prev(conv_entry(
      ck, from_id == 0 ? std::numeric_limits<uint64_t>::max() : from_id - 1));
  else
    s = c->seek(conv_entry(ck, from_id == 0 ? 0 : from_id + 1));
  for (; s && c->valid() && out.size() < count;
       s = backward ? c->prev() : c->next()) {
    auto k = c->key();
    if (k.size() != ck.size() + 8 || k.substr(0, ck.size()) != ck)
      break;
    auto id = get_be64(k.data() + ck.size());
    auto m = load(*t, id);
    if (!m)
      return m.error();
    if (!*m)
      return corrupt("conversation index: message " + hex_id(id) +
                     " is listed but not stored");
    out.push_back(std::move(**m));
  }
  if (!s)
    return s;
  return out;
}

result<std::vector<conversation_summary>> lmdb_client_store::summary() {
  auto t = e->begin_read();
  if (!t)
    return t.error();
  auto c = t->open_cursor(convs);
  if (!c)
    return c.error();
  std::vector<conversation_summary> out;
  status s;
  for (s = c->first(); s && c->valid(); s = c->next()) {
    conversation_summary cs;
    conv_state st;
    if (!decode_conversation_key(c->key(), cs.peer, cs.group_id) ||
        !decode_conv_state(c->value(), st))
      return corrupt("conversation record");
    auto m = load(*t, st.last);
    if (!m)
      return m.error();
    if (!*m)
      return corrupt("conversation record: its last message " +
                     hex_id(st.last) + " is not stored");
    cs.last = std::move(**m);
    cs.unread = st.unread;
    out.push_back(std::move(cs));
  }
  if (!s)
    return s;
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.last.id > b.last.id; });
  return out;
}

result<uint64_t> lmdb_client_store::mark_read(const std::string& peer,
                                              uint32_t group_id,
                                              uint64_t up_to) {
  if (auto s = check_conversation("mark_read", peer, group_id); !s)
    return s;
  auto ck = conversation_key(peer, group_id);
  uint64_t highest = 0;
  auto st = e->write([&](txn& t) -> status {
    highest = 0;
    auto cs = get_conv(t, ck);
    if (!cs)
      return cs.error();
    if (!*cs || (*cs)->unread == 0)
      return {};
    conv_state state = **cs;
    // Walk back from the newest message until every unread one was seen:
    // read conversations cost nothing, long ones only their unread tail.
    std::vector<client_message> marked;
    {
      auto c = t.open_cursor(conv);
      if (!c)
        return c.error();
      uint64_t seen = 0;
      status s;
      for (s = c->seek_for_prev(
             conv_entry(ck, std::numeric_limits<uint64_t>::max()));
           s && c->valid() && seen < state.unread; s = c->prev()) {
        auto k = c->key();
        if (k.size() != ck.size() + 8 || k.substr(0, ck.size()) != ck)
          break;
        auto id = get_be64(k.data() + ck.size());
        auto m = load(t, id);
        if (!m)
          return m.error();
        if (!*m)
          return corrupt("conversation index: message " + hex_id(id) +
                         " is listed but not stored");
        if (!is_unread(**m))
          continue;
        ++seen;
        if (up_to == 0 || id <= up_to)
          marked.push_back(std::move(**m));
      }
      if (!s)
        return s;
    }
    for (auto& m : marked) {
      m.read = true;
      if (m.status == status_received_new)
        m.status = status_received_read;
      if (auto s = t.put(messages, be64(m.id), encode_message(m)); !s)
        return s;
      highest = std::max(highest, m.seq);
    }
    state.unread -= std::min<uint64_t>(state.unread, marked.size());
    return t.put(convs, ck, encode_conv_state(state));
  });
  if (!st)
    return st;
  return highest;
}

status lmdb_client_store::remove(uint64_t id) {
  return e->write([&](txn& t) -> status {
    auto m = load_existing(t, id, "remove");
    if (!m)
      return m.error();
    auto& msg = *m;
    auto key = be64(id);
    if (auto s = t.del(messages, key); !s)
      return s;
    auto ck = conversation_key(msg.peer, msg.group_id);
    if (auto s = t.del(conv, conv_entry(ck, id));
        !s && s.code() != status_code::not_found)
      return s;
    if (msg.seq != 0)
      if (auto s = index_del(t, by_seq, be64(msg.seq), id, "by_seq"); !s)
        return s;
    if (auto s =
          index_del(t, by_mid, mid_key(msg.sender, msg.mid), id, "by_mid");
        !s)
      return s;
    if (msg.outgoing) {
      auto s = t.del(outbox_db, key);
      if (!s && s.code() != status_code::not_found)
        return s;
      if (auto s2 = delete_receipts(t, id); !s2)
        return s2;
    }
    auto cs = get_conv(t, ck);
    if (!cs)
      return cs.error();
    if (!*cs)
      return {};
    conv_state state = **cs;
    if (is_unread(msg) && state.unread > 0)
      --state.unread;
    if (state.last == id) {
      auto prev = last_before(t, ck, id);
      if (!prev)
        return prev.error();
      if (*prev == 0)
        return t.del(convs, ck); // the conversation is empty now
      state.last = *prev;
    }
    return t.put(convs, ck, encode_conv_state(state));
  });
}

// -- key/value
// -----------------------------------------------------------------------

status lmdb_client_store::kv_put(const std::string& key,
                                 const std::string& value) {
  if (key.empty() || key.size() > e->max_key_size())
    return status{status_code::invalid_argument,
                  "kv_put: keys are 1 to " + std::to_string(e->max_key_size()) +
                    " bytes, got " + std::to_string(key.size())};
  return e->write([&](txn& t) -> status { return t.put(kv, key, value); });
}

result<std::optional<std::string>>
lmdb_client_store::kv_get(const std::string& key) {
  if (key.empty() || key.size() > e->max_key_size())
    return status{status_code::invalid_argument,
                  "kv_get: keys are 1 to " + std::to_string(e->max_key_size()) +
                    " bytes, got " + std::to_string(key.size())};
  auto t = e->begin_read();
  if (!t)
    return t.error();
  auto v = t->get(kv, key);
  if (!v)
    return v.error();
  if (!*v)
    return std::optional<std::string>{};
  return std::optional<std::string>{std::string{**v}};
}

} // namespace parley::store
