#include "store/server_store.hpp"

#include "codec/codec.hpp"
#include "store/keys.hpp"
#include "store/segments.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace parley::store {

// Tables (named LMDB databases). Integers in keys are big-endian so that
// byte order is numeric order (store/keys.hpp); values are little-endian
// where they are not keys of something else.
//
//   meta        "format" -> u32 ; "next_uid" -> u64
//   apps        app_id -> name
//   users       app_id \0 address -> u64 uid, u8 disabled, name
//   uids        uid -> u16 app length, app_id, address
//   tokens      sha256(token) -> u64 uid, u64 expires_ms, u8 revoked, app_id
//   user_tokens uid, sha256(token) -> ""
//   log         uid, seq -> record (see encode_record)
//   journal_0/1 gen, uid, seq -> record: recent appends (see "the journal")
//   state       uid -> varint head, varint delivered_upto, then per journal
//               segment of the user: varint gen, varint first seq, after
//               the first as differences (store/segments.hpp, format 4)
//   cursors     uid, device -> u64 acked seq, u64 last ack (server ms)
//   dedup       mid, uid, u8 device length, device -> dedup_entry
//   reads       uid, peer uid -> u64 seq read up to
//   expired     uid, seq -> ""  (EXPIRED already sent for that record)
//   expiries    expires_ms, uid, seq -> ""  (messages by expiry, for sweeps)
//   groups      u32 gid -> u32 flags, u64 owner uid, u64 created ms,
//               u16 app length, app_id, name
//   members     u32 gid, uid -> u32 member flags
//   user_groups uid, u32 gid -> ""
//   (meta "next_gid" -> u32; meta "jgen" -> u64, the last batch's gen;
//    meta "jepoch" -> u32 BE, gens per journal epoch; "jmoved" -> u64)
//
// The journal. A user's log is one range of `log`, so a batch that appends
// to 1,000 users rewrites 1,000 scattered leaf pages, and its fdatasync
// writes them all. New records therefore go to a journal table first,
// under the batch's generation number (gen, one per apply() batch): a batch
// writes its records onto a few contiguous pages. Gens are grouped into
// epochs (server_store_options::journal_epoch gens, meta "jepoch"); an
// epoch's records live in journal_<epoch % 2>. Each batch of an epoch moves
// one share of the users' records of the previous epoch into `log` (each
// user's tail page is then written once an epoch), and the last batch
// clears that table for the epoch after. Where a record lives
// is told by its user's state row, in the same snapshot as the record: the
// gens holding the user's records, each with its first seq; seqs below the
// first segment are in `log`. So a reader on any thread, in any read txn,
// finds a record without an index in memory.

namespace {

constexpr uint8_t record_version = 1;

// -- little-endian values
// ----------------------------------------------------------

void store_le64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<char>(v >> (8 * i));
}

void put_le64(std::string& out, uint64_t v) {
  char b[8];
  store_le64(b, v);
  out.append(b, 8);
}

uint64_t get_le64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string user_key(std::string_view app, std::string_view address) {
  std::string k;
  k.reserve(app.size() + 1 + address.size());
  k.append(app);
  k.push_back('\0');
  k.append(address);
  return k;
}

std::string be64(uint64_t v) {
  std::string s;
  put_be64(s, v);
  return s;
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string to_hex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string from_hex(std::string_view s) {
  std::string out;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i + 1 < s.size(); i += 2) {
    int hi = val(s[i]), lo = val(s[i + 1]);
    if (hi < 0 || lo < 0)
      return {};
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

/// 32 random bytes as base64url: 43 characters, prefixed "pt_".
std::string new_token() {
  unsigned char raw[32];
  RAND_bytes(raw, sizeof(raw));
  static const char* alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "pt_";
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0)
    out += alphabet[(acc << (6 - bits)) & 63];
  return out;
}

status check_name(const char* what, std::string_view s, size_t max) {
  if (s.empty())
    return status{status_code::invalid_argument,
                  std::string{what} + " must not be empty"};
  if (s.size() > max)
    return status{status_code::invalid_argument,
                  std::string{what} + " '" + std::string{s} +
                    "' is longer than " + std::to_string(max) + " bytes"};
  if (s.find('\0') != std::string_view::npos)
    return status{status_code::invalid_argument,
                  std::string{what} + " must not contain NUL bytes"};
  return {};
}

// -- records
// -------------------------------------------------------------------------

/// Record layout: u8 version, u64 ts, u64 expires, u64 other uid, u8 frame
/// type, u8 device length, device, frame (header + body).
std::string encode_record(uint64_t ts, uint64_t expires, uint64_t other,
                          codec::frame_type type, std::string_view device,
                          const codec::buffer& frame);

/// A stored record's fields, viewing its bytes (valid while they are).
struct record_view {
  uint64_t ts_ms = 0;
  uint64_t expires_ms = 0;
  uint64_t other_uid = 0;
  codec::frame_type type = codec::frame_type::message;
  std::string_view device;
  std::string_view frame;
};

/// Whom an incoming message record owes a receipt, and for what.
struct receipt_due {
  uint64_t sender = 0; ///< The sender's uid, whose log gets the receipt.
  uint64_t mid = 0;
  uint32_t group_id = 0;
  bool wanted = false; ///< The sender asked for this receipt.
};

bool view_record(std::string_view v, record_view& out) {
  if (v.size() < 27 || static_cast<uint8_t>(v[0]) != record_version)
    return false;
  size_t dlen = static_cast<uint8_t>(v[26]);
  if (v.size() < 27 + dlen)
    return false;
  out.ts_ms = get_le64(v.data() + 1);
  out.expires_ms = get_le64(v.data() + 9);
  out.other_uid = get_le64(v.data() + 17);
  out.type = static_cast<codec::frame_type>(v[25]);
  out.device = v.substr(27, dlen);
  out.frame = v.substr(27 + dlen);
  return true;
}

/// encode_record, appended to `out`.
void append_encoded_record(std::string& out, uint64_t ts, uint64_t expires,
                           uint64_t other, codec::frame_type type,
                           std::string_view device,
                           const codec::buffer& frame) {
  size_t at = out.size();
  out.resize(at + 27 + device.size() + frame.size());
  char* p = out.data() + at;
  p[0] = static_cast<char>(record_version);
  store_le64(p + 1, ts);
  store_le64(p + 9, expires);
  store_le64(p + 17, other);
  p[25] = static_cast<char>(type);
  p[26] = static_cast<char>(device.size());
  if (!device.empty())
    std::memcpy(p + 27, device.data(), device.size());
  if (!frame.empty())
    std::memcpy(p + 27 + device.size(), frame.data(), frame.size());
}

/// The record alone (one allocation, fields stored in place).
std::string encode_record(uint64_t ts, uint64_t expires, uint64_t other,
                          codec::frame_type type, std::string_view device,
                          const codec::buffer& frame) {
  std::string r;
  append_encoded_record(r, ts, expires, other, type, device, frame);
  return r;
}

bool decode_record(std::string_view v, uint64_t seq, log_record& out) {
  record_view r;
  if (!view_record(v, r))
    return false;
  out.seq = seq;
  out.ts_ms = r.ts_ms;
  out.expires_ms = r.expires_ms;
  out.other_uid = r.other_uid;
  out.type = r.type;
  out.origin_device.assign(r.device);
  out.frame.assign(r.frame);
  return true;
}

/// The dedup key of message `mid` from (uid, device): the mid first, so that
/// a batch's inserts (time-based mids, made about now) land on a few pages
/// at the right edge of the tree instead of one page per sender.
void dedup_key(key_builder& k, uint64_t uid, std::string_view device,
               uint64_t mid) {
  k.u64(mid).u64(uid).u8(static_cast<uint8_t>(device.size())).bytes(device);
}

/// Segments a user's state keeps in place; more go to the heap. A busy
/// user of a 1,000-user chat at ~80 messages a batch is in ~10 gens of an
/// epoch of 64, and the row holds two epochs.
constexpr size_t inline_segments = 2 * 16;

struct user_state {
  uint64_t head = 0;
  uint64_t delivered_upto = 0;
  segment_list<inline_segments> segs; ///< Ascending gens and seqs.
};

struct token_rec {
  uint64_t uid = 0;
  uint64_t expires_ms = 0;
  bool revoked = false;
  std::string app;
};

std::string encode_token(const token_rec& t) {
  std::string v;
  put_le64(v, t.uid);
  put_le64(v, t.expires_ms);
  v.push_back(t.revoked ? 1 : 0);
  v.append(t.app);
  return v;
}

bool decode_token(std::string_view v, token_rec& t) {
  if (v.size() < 17)
    return false;
  t.uid = get_le64(v.data());
  t.expires_ms = get_le64(v.data() + 8);
  t.revoked = v[16] != 0;
  t.app.assign(v.data() + 17, v.size() - 17);
  return true;
}

struct user_rec {
  uint64_t uid = 0;
  bool disabled = false;
  std::string name;
};

std::string encode_user(const user_rec& u) {
  std::string v;
  put_le64(v, u.uid);
  v.push_back(u.disabled ? 1 : 0);
  v.append(u.name);
  return v;
}

bool decode_user(std::string_view v, user_rec& u) {
  if (v.size() < 9)
    return false;
  u.uid = get_le64(v.data());
  u.disabled = v[8] != 0;
  u.name.assign(v.data() + 9, v.size() - 9);
  return true;
}

} // namespace

// -- impl
// --------------------------------------------------------------------------------

struct server_store::impl {

  /// Format 3 to 4: state rows from fixed 16 + 16 k bytes to varints
  /// (encode_state_row). Formats 1 and 2 have 16-byte rows: the same code.
  status migrate_3_to_4(txn& t) {
    auto c = t.open_cursor(state);
    if (!c)
      return c.error();
    if (auto s = c->first(); !s)
      return s;
    std::string row;
    while (c->valid()) {
      user_state st;
      if (!decode_state_row_v3(c->value(), st.head, st.delivered_upto, st.segs))
        return corrupt("state");
      encode_state_row(row, st.head, st.delivered_upto, st.segs);
      std::string key{c->key()};
      if (auto s = c->put(key, row); !s)
        return s;
      if (auto s = c->seek(key); !s)
        return s;
      if (auto s = c->next(); !s)
        return s;
    }
    return {};
  }

  /// Format 1 to 2: (protocol version 2) `status_update` gained a trailing
  /// u32 `receivers`; log records keep encoded frames and are streamed as
  /// they are, so every stored status_update gets the field (0: a log
  /// record never carries it). And the dedup key begins with the mid
  /// (dedup_key). One pass over each, in the opening transaction.
  status migrate_1_to_2(txn& t) {
    auto c = t.open_cursor(log);
    if (!c)
      return c.error();
    if (auto s = c->first(); !s)
      return s;
    while (c->valid()) {
      std::string_view v = c->value();
      if (v.size() >= 27 && static_cast<codec::frame_type>(v[25]) ==
                              codec::frame_type::status_update) {
        size_t at = 27 + static_cast<uint8_t>(v[26]);
        if (v.size() < at + codec::header_size)
          return corrupt("log record");
        std::string nv{v};
        nv.append(4, '\0');
        auto* h = reinterpret_cast<unsigned char*>(nv.data() + at);
        uint32_t len = h[1] | (h[2] << 8) | (uint32_t{h[3]} << 16);
        if (at + codec::header_size + len != v.size())
          return corrupt("log record");
        len += 4;
        h[1] = static_cast<unsigned char>(len);
        h[2] = static_cast<unsigned char>(len >> 8);
        h[3] = static_cast<unsigned char>(len >> 16);
        std::string key{c->key()};
        if (auto s = t.put(log, key, nv); !s)
          return s;
        if (auto s = c->seek(key); !s)
          return s;
      }
      if (auto s = c->next(); !s)
        return s;
    }
    // The dedup key was (uid, u8 length, device, mid); it is (mid, uid, u8
    // length, device) now (dedup_key).
    std::vector<std::pair<std::string, std::string>> rekeyed;
    auto d = t.open_cursor(dedup);
    if (!d)
      return d.error();
    for (auto s = d->first(); d->valid(); s = d->next()) {
      if (!s)
        return s;
      auto k = d->key();
      if (k.size() < 17 || k.size() != size_t{17} + static_cast<uint8_t>(k[8]))
        return corrupt("dedup key");
      key_builder nk;
      nk.bytes(k.substr(k.size() - 8)).bytes(k.substr(0, k.size() - 8));
      rekeyed.emplace_back(std::string{nk.view()}, std::string{d->value()});
    }
    for (auto& [k, v] : rekeyed) {
      (void)v;
      auto old = k.substr(8) + k.substr(0, 8);
      if (auto s = t.del(dedup, old); !s)
        return s;
    }
    for (auto& [k, v] : rekeyed)
      if (auto s = t.put(dedup, k, v); !s)
        return s;
    return {};
  }
  std::unique_ptr<env> e;
  server_store_options opts;
  dbi meta, apps, users, uids, tokens, user_tokens, log, state, cursors, dedup,
    reads, expired, expiries, groups, members, user_groups;
  dbi journal[2];
  /// Gens per journal epoch (meta "jepoch"); set at open, before any
  /// reader, and constant afterwards.
  uint64_t epoch_len = 16;
  // Written by apply() (the storage thread), read by every write txn: the
  // write lock orders them, the atomics keep the reads outside it defined.
  std::atomic<uint64_t> gen{0};       ///< Of the last committed batch (meta "jgen").
  std::atomic<uint64_t> batch_gen{0}; ///< Gen the running write appends under.
  codec::buffer frame_buf;     // writer-side scratch (one writer at a time)
  uint64_t trim_next_uid = 0;  // round-robin position of log trimming
  std::string trim_next_dedup; // round-robin position of dedup trimming
  codec::message scratch_msg;
  bool room_full = false; // measure_room() before this batch
  /// The batch's users' state rows, while apply() runs its transaction
  /// `batch_txn`: each row is read once and written once per batch instead
  /// of at every append and ack. Other transactions (other threads'
  /// readers, the writes outside apply()) are not batch_txn and go to the
  /// table.
  std::atomic<const txn*> batch_txn{nullptr};
  struct cached_state {
    user_state st;
    bool dirty = false;
  };
  std::unordered_map<uint64_t, cached_state> state_cache;
  std::string row_buf; // write_state's scratch (writers only, one at a time)
  /// A record waiting to be written: its value at [at, at + len) of an
  /// arena string.
  struct staged {
    uint64_t uid, seq;
    size_t at, len;
  };
  /// Sorts `v` by (uid, seq): the order in which one cursor writes them
  /// with the fewest searches.
  static void sort_by_user(std::vector<staged>& v) {
    std::sort(v.begin(), v.end(), [](const staged& a, const staged& b) {
      return a.uid != b.uid ? a.uid < b.uid : a.seq < b.seq;
    });
  }
  /// move_slice's scratch: the records being moved into `log`, their
  /// values (at most about move_budget bytes at a time), their users.
  std::vector<staged> move_buf;
  std::string move_arena;
  std::vector<uint64_t> move_uids;
  size_t move_budget = size_t{1} << 20;
  /// Steps of the move of an epoch into `log` (move_share).
  static constexpr uint64_t move_shares = 16;
  /// do_ack's and do_read's scratch.
  std::vector<receipt_due> dues_buf;
  /// The batch's journal records (gen batch_gen), appended by
  /// append_record in apply()'s transaction and written by spill(): at the
  /// end of the batch, or before anything in the batch reads or changes
  /// its own gen. Sorted, they go in through one cursor, the first time
  /// with MDB_APPEND (their keys begin with the new gen, so they sort after
  /// everything in the table, and pages fill completely).
  std::vector<staged> pending;
  std::string pending_arena;
  bool spilled = false; ///< Part of this gen is in the table: no append.

  status spill(txn& t) {
    if (pending.empty())
      return {};
    sort_by_user(pending);
    auto c = t.open_cursor(journal_of(batch_gen));
    if (!c)
      return c.error();
    auto flags = spilled ? put_flags::none : put_flags::append;
    for (auto& r : pending) {
      key_builder k;
      k.u64(batch_gen).u64(r.uid).u64(r.seq);
      if (auto s = c->put(k.view(),
                          std::string_view{pending_arena}.substr(r.at, r.len),
                          flags);
          !s)
        return s;
    }
    pending.clear();
    pending_arena.clear();
    spilled = true;
    return {};
  }

  /// Before `t` reads or changes journal gen `g`: the batch's pending
  /// records are written out when they are of that gen. (A failure is kept
  /// in spill_status, which apply() returns at the batch's end: the
  /// transaction is then aborted, or rerun after the map grew.)
  void spill_for(txn& t, uint64_t g) {
    // The txn first: readers on other threads call this too, and must not
    // look at the writer's buffer (ThreadSanitizer found them reading
    // `pending` while the storage thread appended to it).
    if (&t != batch_txn.load(std::memory_order_relaxed))
      return;
    if (g == batch_gen && !pending.empty())
      spill_status = spill(t);
  }
  status spill_status;
  std::string room_text;

  /// Decides, before a batch, whether new messages must be refused because
  /// the map, at its largest allowed size, is nearly full. The reserve
  /// keeps acks, receipts and trims working (LMDB needs free pages even to
  /// delete), so the server recovers as delivered messages are trimmed.
  void measure_room() {
    room_full = false;
    auto s = e->stats();
    if (!s || s->page_size == 0)
      return;
    uint64_t capacity = s->max_map_size / s->page_size;
    uint64_t reserve = std::clamp<uint64_t>(
      capacity / 32, 64, (uint64_t{64} << 20) / s->page_size);
    if (s->used_pages + reserve <= capacity)
      return; // far from the limit: no need to count free pages
    // Near it: pages freed by trims are reused, so count them (a read
    // txn: LMDB reads its free list in read-only txns only).
    uint64_t used = s->used_pages;
    if (auto r = e->begin_read(); r)
      if (auto free_pages = r->free_pages(); free_pages && *free_pages < used)
        used -= *free_pages;
    if (used + reserve <= capacity)
      return;
    room_full = true;
    room_text = "the server's storage is full (" +
                std::to_string(used * s->page_size >> 20) + " MiB of " +
                std::to_string(s->max_map_size >> 20) +
                " MiB, max_map_size): the message was not stored; send it "
                "again later (space returns as delivered messages are "
                "trimmed; the operator can raise --max-map-size)";
  }

  status corrupt(const char* what) const {
    return status{status_code::corruption, std::string{"corrupt "} + what +
                                             " record in '" + e->path() + "'"};
  }

  // -- lookups inside a txn
  // ----------------------------------------------------

  result<std::optional<user_rec>> get_user(txn& t, std::string_view app,
                                           std::string_view address) {
    auto v = t.get(users, user_key(app, address));
    if (!v)
      return v.error();
    if (!*v)
      return std::optional<user_rec>{};
    user_rec u;
    if (!decode_user(**v, u))
      return corrupt("user");
    return std::optional<user_rec>{std::move(u)};
  }

  // Who is who, for apply()'s appends and acks: users change only by
  // deletion (delete_user drops them here), so these need no other
  // invalidation. Used and changed only inside write transactions, which
  // LMDB runs one at a time. Bounded: cleared when full.
  static constexpr size_t max_cached_users = size_t{1} << 20;
  std::unordered_map<uint64_t, std::pair<std::string, std::string>>
    identities;                                       ///< uid -> (app, address)
  std::unordered_map<std::string, uint64_t> uid_cache; ///< user_key -> uid

  /// The uid of (app, address), 0 when there is no such user.
  result<uint64_t> uid_of(txn& t, std::string_view app,
                          std::string_view address) {
    bool batch = &t == batch_txn.load(std::memory_order_relaxed);
    auto key = user_key(app, address);
    if (batch)
      if (auto it = uid_cache.find(key); it != uid_cache.end())
        return it->second;
    auto u = get_user(t, app, address);
    if (!u)
      return u.error();
    if (!*u)
      return uint64_t{0};
    if (batch) {
      if (uid_cache.size() >= max_cached_users)
        uid_cache.clear();
      uid_cache.emplace(std::move(key), (*u)->uid);
    }
    return (*u)->uid;
  }

  /// (app, address) of a uid; empty app when unknown.
  std::pair<std::string, std::string> identity(txn& t, uint64_t uid) {
    bool batch = &t == batch_txn.load(std::memory_order_relaxed);
    if (batch)
      if (auto it = identities.find(uid); it != identities.end())
        return it->second;
    auto id = read_identity(t, uid);
    if (batch && !id.first.empty()) {
      if (identities.size() >= max_cached_users)
        identities.clear();
      identities.emplace(uid, id);
    }
    return id;
  }

  std::pair<std::string, std::string> read_identity(txn& t, uint64_t uid) {
    auto v = t.get(uids, be64(uid));
    if (!v || !*v || (*v)->size() < 2)
      return {};
    auto s = **v;
    size_t alen =
      static_cast<uint8_t>(s[0]) | (static_cast<uint8_t>(s[1]) << 8);
    if (s.size() < 2 + alen)
      return {};
    return {std::string{s.substr(2, alen)}, std::string{s.substr(2 + alen)}};
  }

  user_state get_state(txn& t, uint64_t uid) {
    if (&t == batch_txn.load(std::memory_order_relaxed)) {
      auto [it, fresh] = state_cache.try_emplace(uid);
      if (fresh)
        it->second.st = read_state(t, uid);
      return it->second.st;
    }
    return read_state(t, uid);
  }

  user_state read_state(txn& t, uint64_t uid) {
    user_state st;
    auto v = t.get(state, be64(uid));
    // A malformed row (none is written) keeps what could be read, as a
    // short row did before format 4.
    if (v && *v)
      decode_state_row(**v, st.head, st.delivered_upto, st.segs);
    return st;
  }

  status put_state(txn& t, uint64_t uid, const user_state& st) {
    if (&t == batch_txn.load(std::memory_order_relaxed)) {
      auto& c = state_cache[uid];
      c.st = st;
      c.dirty = true;
      return {};
    }
    return write_state(t, uid, st);
  }

  /// Writes the batch's changed state rows, in uid order.
  status flush_states(txn& t) {
    std::vector<uint64_t> uids;
    for (auto& [uid, c] : state_cache)
      if (c.dirty)
        uids.push_back(uid);
    std::sort(uids.begin(), uids.end());
    // One cursor: neighbouring uids' rows share pages, found without a
    // search from the root.
    auto c = t.open_cursor(state);
    if (!c)
      return c.error();
    for (auto uid : uids)
      if (auto s = write_state(t, uid, state_cache[uid].st, &*c); !s)
        return s;
    return {};
  }

  status write_state(txn& t, uint64_t uid, const user_state& st,
                     store::cursor* c = nullptr) {
    auto& v = row_buf;
    encode_state_row(v, st.head, st.delivered_upto, st.segs);
    return c != nullptr ? c->put(be64(uid), v) : t.put(state, be64(uid), v);
  }

  // -- where a record lives: `log` or a journal gen (see "the journal")

  dbi journal_of(uint64_t g) const { return journal[(g / epoch_len) % 2]; }

  /// The table and key of (uid, seq) for a user in state `st` (in `t`,
  /// with the batch's pending journal records written out when the record
  /// is of this batch).
  std::pair<dbi, key_builder> locate(txn& t, const user_state& st,
                                     uint64_t uid, uint64_t seq) {
    key_builder k;
    for (auto i = st.segs.size(); i-- > 0;)
      if (st.segs[i].first <= seq) {
        spill_for(t, st.segs[i].gen);
        k.u64(st.segs[i].gen).u64(uid).u64(seq);
        return {journal_of(st.segs[i].gen), std::move(k)};
      }
    k.u64(uid).u64(seq);
    return {log, std::move(k)};
  }

  /// Calls f(seq, value) for the entries of `db` from `from` on (forward)
  /// or from the last one at or before it (back), while seq_of(key) names a
  /// seq of the range; sets `stopped` when f returned false (the caller
  /// must not go on to other ranges).
  template<class SeqOf, class F>
  static status walk(txn& t, dbi db, const key_builder& from, bool forward,
                     SeqOf&& seq_of, F& f, bool& stopped) {
    auto c = t.open_cursor(db);
    if (!c)
      return c.error();
    if (auto s = forward ? c->seek(from.view()) : c->seek_for_prev(from.view());
        !s)
      return s;
    while (c->valid()) {
      std::optional<uint64_t> seq = seq_of(c->key());
      if (!seq)
        break;
      result<bool> go = f(*seq, c->value());
      if (!go)
        return go.error();
      if (!*go) {
        stopped = true;
        return {};
      }
      if (auto s = forward ? c->next() : c->prev(); !s)
        return s;
    }
    return {};
  }

  /// seq_of for `log` keys of `uid`, below `end`.
  static auto log_seqs(uint64_t uid, uint64_t end = ~uint64_t{0}) {
    return [uid, end](std::string_view key) -> std::optional<uint64_t> {
      if (key.size() != 16 || get_be64(key.data()) != uid)
        return std::nullopt;
      uint64_t seq = get_be64(key.data() + 8);
      return seq < end ? std::optional<uint64_t>{seq} : std::nullopt;
    };
  }

  /// seq_of for journal keys of (gen, uid).
  static auto journal_seqs(uint64_t g, uint64_t uid) {
    return [g, uid](std::string_view key) -> std::optional<uint64_t> {
      if (key.size() != 24 || get_be64(key.data()) != g ||
          get_be64(key.data() + 8) != uid)
        return std::nullopt;
      return get_be64(key.data() + 16);
    };
  }

  /// Visits the records of `uid` with seq >= `from`, ascending: f(seq,
  /// value) returns true to go on, false to stop, or an error. Segments
  /// that begin after `last` are not visited: a scan that ends before this
  /// batch's gen neither seeks in its table nor writes the batch's pending
  /// records out (an ack's receipt scan, interleaved with appends to the
  /// same user, did that several times per batch, BENCHMARKS.md session 8).
  template<class F>
  status each_record(txn& t, const user_state& st, uint64_t uid, uint64_t from,
                     F&& f, uint64_t last = ~uint64_t{0}) {
    if (from > last)
      return {};
    bool stopped = false;
    uint64_t jfirst = st.segs.empty() ? ~uint64_t{0} : st.segs[0].first;
    if (from < jfirst) {
      key_builder k;
      k.u64(uid).u64(from);
      if (auto s = walk(t, log, k, true, log_seqs(uid, jfirst), f, stopped);
          !s || stopped)
        return s;
    }
    for (size_t i = 0; i < st.segs.size(); ++i) {
      uint64_t end =
        i + 1 < st.segs.size() ? st.segs[i + 1].first : ~uint64_t{0};
      if (end <= from)
        continue;
      if (st.segs[i].first > last)
        break;
      uint64_t g = st.segs[i].gen;
      spill_for(t, g);
      key_builder k;
      k.u64(g).u64(uid).u64(std::max(from, st.segs[i].first));
      if (auto s =
            walk(t, journal_of(g), k, true, journal_seqs(g, uid), f, stopped);
          !s || stopped)
        return s;
    }
    return {};
  }

  /// Visits the records of `uid` with seq < `before` (0: all), descending,
  /// as each_record does.
  template<class F>
  status each_record_back(txn& t, const user_state& st, uint64_t uid,
                          uint64_t before, F&& f) {
    bool stopped = false;
    uint64_t last = before == 0 ? ~uint64_t{0} : before - 1; // inclusive
    if (before == 1)
      return {};
    for (auto i = st.segs.size(); i-- > 0;) {
      if (st.segs[i].first > last)
        continue;
      uint64_t g = st.segs[i].gen;
      spill_for(t, g);
      key_builder k;
      k.u64(g).u64(uid).u64(last);
      if (auto s =
            walk(t, journal_of(g), k, false, journal_seqs(g, uid), f, stopped);
          !s || stopped)
        return s;
      last = st.segs[i].first - 1; // what precedes this segment
      if (last == 0)
        return {};
    }
    key_builder k;
    k.u64(uid).u64(last);
    return walk(t, log, k, false, log_seqs(uid), f, stopped);
  }

  /// Moves the records of users [uid_lo, uid_hi) in journal epoch `epoch`
  /// into `log` and drops those segments from their state rows. Gen-major
  /// order: each user's tail page becomes dirty once and stays so for the
  /// epoch's later gens. The moved entries stay in the journal table (no
  /// segment points at them any more) until the table is cleared.
  status move_slice(txn& t, uint64_t epoch, uint64_t uid_lo, uint64_t uid_hi) {
    if (uid_lo >= uid_hi)
      return {};
    dbi j = journal[epoch % 2];
    // Read gen-major (the journal's order), write user-major: one cursor on
    // `log` then puts each user's records one after the other at the end
    // of that user's range, where LMDB finds the page without a search
    // from the root. The values are copied out first: the puts may reuse
    // pages, and the journal's entries stay until the table is cleared.
    // At most about move_budget bytes wait at a time: past it, what was
    // read goes out before the rest is read. Any order of puts gives the
    // same table; this one only searches less.
    auto& mv = move_buf;
    auto& arena = move_arena;
    auto& uids = move_uids;
    uids.clear();
    auto write_out = [&]() -> status {
      sort_by_user(mv);
      auto c = t.open_cursor(log);
      if (!c)
        return c.error();
      for (auto& m : mv) {
        if (uids.empty() || uids.back() != m.uid)
          uids.push_back(m.uid);
        key_builder k;
        k.u64(m.uid).u64(m.seq);
        if (auto s =
              c->put(k.view(), std::string_view{arena}.substr(m.at, m.len));
            !s)
          return s;
      }
      mv.clear();
      arena.clear();
      return {};
    };
    mv.clear();
    arena.clear();
    {
      auto c = t.open_cursor(j);
      if (!c)
        return c.error();
      // One seek per gen that holds records: a seek that lands in a later
      // gen goes on from that gen (big batches skip gens, next_gen).
      const uint64_t end = (epoch + 1) * epoch_len;
      for (uint64_t g = epoch * epoch_len; g < end;) {
        key_builder k;
        k.u64(g).u64(uid_lo);
        if (auto s = c->seek(k.view()); !s)
          return s;
        if (!c->valid())
          break;
        if (c->key().size() != 24)
          return corrupt("journal key");
        if (uint64_t kg = get_be64(c->key().data()); kg != g) {
          g = kg; // the gens before it hold nothing at or above uid_lo
          continue;
        }
        while (c->valid()) {
          auto key = c->key();
          if (key.size() != 24)
            return corrupt("journal key");
          uint64_t uid = get_be64(key.data() + 8);
          if (get_be64(key.data()) != g || uid >= uid_hi)
            break;
          if (arena.size() >= move_budget)
            if (auto s = write_out(); !s)
              return s;
          mv.push_back(staged{uid, get_be64(key.data() + 16), arena.size(),
                              c->value().size()});
          arena.append(c->value());
          if (auto s = c->next(); !s)
            return s;
        }
        ++g;
      }
    }
    if (auto s = write_out(); !s)
      return s;
    // A big move leaves its memory to the allocator, not to the next batch.
    if (arena.capacity() > 2 * move_budget)
      std::string{}.swap(arena);
    std::sort(uids.begin(), uids.end());
    uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
    uint64_t next_epoch_gen = (epoch + 1) * epoch_len;
    for (auto uid : uids) {
      auto st = get_state(t, uid);
      if (st.head == 0)
        continue; // no state row: nothing points into the journal
      auto keep = std::find_if(st.segs.begin(), st.segs.end(),
                               [&](const segment& sg) {
                                 return sg.gen >= next_epoch_gen;
                               });
      st.segs.erase_front(keep);
      if (auto s = put_state(t, uid, st); !s)
        return s;
    }
    return {};
  }

  /// Where the move of the previous epoch stands: users below it are in
  /// `log` (meta "jmoved").
  uint64_t moved_below(txn& t) {
    auto v = t.get(meta, "jmoved");
    return v && *v && (*v)->size() == 8 ? get_le64((*v)->data()) : 0;
  }

  status set_moved_below(txn& t, uint64_t uid) {
    std::string v;
    put_le64(v, uid);
    return t.put(meta, "jmoved", v);
  }

  /// Batch `g`'s share of moving the previous epoch into the log. The move
  /// goes in `move_shares` steps, each one more part of the users (by uid,
  /// up to the users that exist now): gen i of an epoch of E has moved the
  /// first floor((i + 1) * shares / E) parts, and the epoch's last gen moves
  /// the rest and clears the table for the next epoch. So the move is spread
  /// over the epoch instead of one batch moving everything, and with E
  /// above `move_shares` only every (E / shares)-th gen moves: a part's
  /// users have their tail pages written once an epoch, and each part costs
  /// a seek into each of the epoch's gens. A batch that skips gens
  /// (next_gen) moves the parts of the gens it skipped. `prev` is the gen
  /// of the batch before.
  status move_share(txn& t, uint64_t prev, uint64_t g) {
    uint64_t epoch = g / epoch_len;
    if (epoch == 0)
      return {};
    uint64_t i = g % epoch_len;
    // The epoch's first batch (`prev`, the last batch's gen, is in an
    // earlier epoch) starts the move; later ones go on where it stands.
    const bool first = prev / epoch_len != epoch;
    uint64_t lo = first ? 0 : moved_below(t);
    if (i + 1 == epoch_len) {
      if (auto s = move_slice(t, epoch - 1, lo, ~uint64_t{0}); !s)
        return s;
      if (auto s = t.clear(journal[(epoch - 1) % 2]); !s)
        return s;
      return set_moved_below(t, 0);
    }
    const uint64_t shares = std::min<uint64_t>(epoch_len, move_shares);
    uint64_t hi = lo;
    if (uint64_t part = (i + 1) * shares / epoch_len; part > 0) {
      auto n = t.get(meta, "next_uid");
      if (!n)
        return n.error();
      uint64_t users = *n && (*n)->size() == 8 ? get_le64((*n)->data()) : 1;
      hi = std::max(lo, part * users / shares);
    }
    if (hi > lo)
      if (auto s = move_slice(t, epoch - 1, lo, hi); !s)
        return s;
    // (An epoch's first batch writes where the move stands even when it
    // moved nothing: after move_all, meta "jmoved" says everything.)
    return first || hi > lo ? set_moved_below(t, hi) : status{};
  }

  /// The gen of a batch of `appends` messages after the batch of gen `g`:
  /// g + 1, or up to g + 8 for a big batch (one per 128 messages), but never
  /// past the last gen of g's epoch (that gen's batch finishes the previous
  /// epoch's move). So an epoch holds about as many messages at every batch
  /// size: E batches of up to ~190 messages, fewer bigger ones. Longer epochs
  /// write each busy user's tail page in `log` less often, but make its state
  /// row longer and its share of a move bigger (docs/ARCHITECTURE.md, "the
  /// journal").
  uint64_t next_gen(uint64_t g, size_t appends) const {
    uint64_t k = std::clamp<uint64_t>((appends + 64) / 128, 1, 8);
    uint64_t last = (g / epoch_len + 1) * epoch_len - 1;
    return std::min(g + k, g < last ? last : last + epoch_len);
  }

  /// Moves everything still in the journal into the log and clears both
  /// tables (server_store::flush_journal).
  status move_all(txn& t) {
    uint64_t epoch = gen.load() / epoch_len;
    if (epoch > 0)
      if (auto s = move_slice(t, epoch - 1, moved_below(t), ~uint64_t{0}); !s)
        return s;
    if (auto s = move_slice(t, epoch, 0, ~uint64_t{0}); !s)
      return s;
    for (auto j : journal)
      if (auto s = t.clear(j); !s)
        return s;
    return set_moved_below(t, ~uint64_t{0});
  }

  /// Appends an encoded frame whose seq field is patched to the new head.
  /// `seq_offset` is where the u64 seq sits in the body.
  result<uint64_t> append_record(txn& t, uint64_t uid, uint64_t ts,
                                 uint64_t expires, uint64_t other,
                                 codec::frame_type type,
                                 std::string_view device,
                                 codec::buffer& frame) {
    if (frame.size() < codec::header_size + 8)
      return status{status_code::invalid_argument,
                    "a log record did not encode (a field over its protocol "
                    "limit): nothing was stored"};
    auto st = get_state(t, uid);
    uint64_t seq = st.head + 1;
    // Every log record frame starts its body with the u64 seq.
    for (int i = 0; i < 8; ++i)
      frame[codec::header_size + i] = static_cast<uint8_t>(seq >> (8 * i));
    if (st.segs.empty() || st.segs.back().gen != batch_gen)
      st.segs.push_back(segment{batch_gen, seq});
    if (&t == batch_txn.load(std::memory_order_relaxed)) {
      // Written at the end of the batch, sorted (spill).
      pending.push_back(staged{uid, seq, pending_arena.size(), 0});
      append_encoded_record(pending_arena, ts, expires, other, type, device,
                            frame);
      pending.back().len = pending_arena.size() - pending.back().at;
    } else {
      key_builder k;
      k.u64(batch_gen).u64(uid).u64(seq);
      if (auto s =
            t.put(journal_of(batch_gen), k.view(),
                  encode_record(ts, expires, other, type, device, frame));
          !s)
        return s;
    }
    st.head = seq;
    if (auto s = put_state(t, uid, st); !s)
      return s;
    if (appended != nullptr) {
      appended->emplace_back();
      auto& a = appended->back();
      a.uid = uid;
      a.rec.seq = seq;
      a.rec.ts_ms = ts;
      a.rec.expires_ms = expires;
      a.rec.other_uid = other;
      a.rec.origin_device.assign(device);
      a.rec.type = type;
      a.rec.frame.assign(reinterpret_cast<const char*>(frame.data()),
                         frame.size());
    }
    return seq;
  }

  /// Set by apply() when its caller wants the records it appends.
  std::vector<appended_record>* appended = nullptr;

  /// Creates the user if missing and issues a token into `out`.
  status add_user(txn& t, const std::string& app_id, const std::string& address,
                  const std::string& name, uint32_t ttl_s, uint64_t now_ms,
                  issued_token& out);

  status issue_token(txn& t, uint64_t uid, const std::string& app,
                     uint32_t ttl_s, uint64_t now, issued_token& out) {
    out.token = new_token();
    auto ttl = ttl_s != 0 ? ttl_s : opts.token_ttl_s;
    out.expires_ms = now + uint64_t{ttl} * 1000;
    auto h = sha256(out.token);
    token_rec rec{uid, out.expires_ms, false, app};
    if (auto s = t.put(tokens, h, encode_token(rec)); !s)
      return s;
    std::string k = be64(uid);
    k += h;
    return t.put(user_tokens, k, "");
  }



  status delete_user(txn& t, const std::string& app, const std::string& address,
                     uint64_t uid) {
    identities.erase(uid);
    uid_cache.erase(user_key(app, address));
    // Tokens of the user.
    auto c = t.open_cursor(user_tokens);
    if (!c)
      return c.error();
    auto prefix = be64(uid);
    if (auto s = c->seek(prefix); !s)
      return s;
    std::vector<std::string> hashes;
    while (c->valid() && c->key().substr(0, 8) == prefix) {
      hashes.emplace_back(c->key().substr(8));
      if (auto s = c->next(); !s)
        return s;
    }
    for (auto& h : hashes) {
      auto s = t.del(tokens, h);
      if (!s && s.code() != status_code::not_found)
        return s;
    }
    // (expiries entries of a deleted user are dropped by the next sweep,
    // its dedup entries by the trimmer: uids are never reused.)
    if (auto s = spill(t); !s)
      return s;
    for (auto& sg : get_state(t, uid).segs) {
      key_builder jp;
      jp.u64(sg.gen).u64(uid);
      if (auto s = delete_prefix(t, journal_of(sg.gen), jp.view()); !s)
        return s;
    }
    for (dbi db : {user_tokens, log, cursors, reads, expired})
      if (auto s = delete_prefix(t, db, prefix); !s)
        return s;
    for (dbi db : {state, uids}) {
      auto s = t.del(db, prefix);
      if (!s && s.code() != status_code::not_found)
        return s;
    }
    return t.del(users, user_key(app, address));
  }

  // -- write operations
  // ------------------------------------------------------------

  // -- groups
  // ------------------------------------------------------------------

  struct group_rec {
    uint32_t flags = 0;
    uint64_t owner = 0;
    uint64_t created_ms = 0;
    std::string app;
    std::string name;
  };

  static std::string encode_group(const group_rec& g) {
    std::string v;
    for (int i = 0; i < 4; ++i)
      v.push_back(static_cast<char>(g.flags >> (8 * i)));
    put_le64(v, g.owner);
    put_le64(v, g.created_ms);
    v.push_back(static_cast<char>(g.app.size()));
    v.push_back(static_cast<char>(g.app.size() >> 8));
    v.append(g.app);
    v.append(g.name);
    return v;
  }

  static bool decode_group(std::string_view v, group_rec& g) {
    if (v.size() < 22)
      return false;
    g.flags = static_cast<uint8_t>(v[0]) |
              (static_cast<uint32_t>(static_cast<uint8_t>(v[1])) << 8) |
              (static_cast<uint32_t>(static_cast<uint8_t>(v[2])) << 16) |
              (static_cast<uint32_t>(static_cast<uint8_t>(v[3])) << 24);
    g.owner = get_le64(v.data() + 4);
    g.created_ms = get_le64(v.data() + 12);
    size_t alen = static_cast<uint8_t>(v[20]) |
                  (static_cast<size_t>(static_cast<uint8_t>(v[21])) << 8);
    if (v.size() < 22 + alen)
      return false;
    g.app.assign(v.data() + 22, alen);
    g.name.assign(v.data() + 22 + alen, v.size() - 22 - alen);
    return true;
  }

  static std::string le32(uint32_t x) {
    std::string v;
    for (int i = 0; i < 4; ++i)
      v.push_back(static_cast<char>(x >> (8 * i)));
    return v;
  }

  static uint32_t get_le32(const char* p) {
    return static_cast<uint8_t>(p[0]) |
           (static_cast<uint32_t>(static_cast<uint8_t>(p[1])) << 8) |
           (static_cast<uint32_t>(static_cast<uint8_t>(p[2])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(p[3])) << 24);
  }

  result<std::optional<group_rec>> get_group(txn& t, uint32_t gid) {
    key_builder k;
    k.u32(gid);
    auto v = t.get(groups, k.view());
    if (!v)
      return v.error();
    if (!*v)
      return std::optional<group_rec>{};
    group_rec g;
    if (!decode_group(**v, g))
      return corrupt("group");
    return std::optional<group_rec>{std::move(g)};
  }

  /// The member flags of `uid` in `gid`, nullopt when not a member.
  result<std::optional<uint32_t>> member_of(txn& t, uint32_t gid,
                                            uint64_t uid) {
    key_builder k;
    k.u32(gid).u64(uid);
    auto v = t.get(members, k.view());
    if (!v)
      return v.error();
    if (!*v)
      return std::optional<uint32_t>{};
    if ((*v)->size() < 4)
      return corrupt("group member");
    return std::optional<uint32_t>{get_le32((*v)->data())};
  }

  /// Every member of `gid` as (uid, flags), by uid.
  result<std::vector<std::pair<uint64_t, uint32_t>>> members_of(txn& t,
                                                                uint32_t gid) {
    std::vector<std::pair<uint64_t, uint32_t>> out;
    auto c = t.open_cursor(members);
    if (!c)
      return c.error();
    key_builder k;
    k.u32(gid);
    std::string prefix{k.view()};
    if (auto s = c->seek(prefix); !s)
      return s;
    while (c->valid() && c->key().substr(0, 4) == prefix) {
      if (c->key().size() < 12 || c->value().size() < 4)
        return corrupt("group member");
      out.emplace_back(get_be64(c->key().data() + 4),
                       get_le32(c->value().data()));
      if (auto s = c->next(); !s)
        return s;
    }
    return out;
  }

  status put_member(txn& t, uint32_t gid, uint64_t uid, uint32_t flags) {
    key_builder k;
    k.u32(gid).u64(uid);
    if (auto s = t.put(members, k.view(), le32(flags)); !s)
      return s;
    key_builder u;
    u.u64(uid).u32(gid);
    return t.put(user_groups, u.view(), "");
  }

  /// Removes `uid` from `gid` (nothing when it is not a member).
  status del_member(txn& t, uint32_t gid, uint64_t uid) {
    auto mine = member_of(t, gid, uid);
    if (!mine)
      return mine.error();
    if (!*mine)
      return {};
    key_builder k;
    k.u32(gid).u64(uid);
    if (auto s = t.del(members, k.view()); !s)
      return s;
    key_builder u;
    u.u64(uid).u32(gid);
    return t.del(user_groups, u.view());
  }

  /// The group as group_info shows it (members with their addresses).
  result<codec::group_info> group_view(txn& t, uint32_t gid,
                                       const group_rec& g) {
    codec::group_info info;
    info.group_id = gid;
    info.name = g.name;
    info.flags = g.flags;
    info.owner = identity(t, g.owner).second;
    auto ms = members_of(t, gid);
    if (!ms)
      return ms.error();
    for (auto& [uid, flags] : *ms)
      info.members.push_back(codec::member{identity(t, uid).second, flags});
    return info;
  }

  /// Appends a group_event to the log of each of `uids`.
  status group_event(txn& t, const std::vector<uint64_t>& uids, uint32_t gid,
                     codec::group_event_kind kind, const group_op& op,
                     const group_rec& g,
                     const std::vector<codec::member>& concerned,
                     std::vector<uint64_t>& touched) {
    codec::group_event ev;
    ev.ts_ms = op.now_ms;
    ev.group_id = gid;
    ev.kind = kind;
    ev.actor = op.actor;
    ev.name = g.name;
    ev.flags = g.flags;
    ev.members = concerned;
    for (auto uid : uids) {
      frame_buf.clear();
      codec::encode(ev, frame_buf);
      auto seq = append_record(t, uid, op.now_ms, 0, op.actor_uid,
                               codec::frame_type::group_event, {}, frame_buf);
      if (!seq)
        return seq.error();
      touched.push_back(uid);
    }
    return {};
  }

  status do_group(txn& t, group_op& op, group_outcome& out,
                  std::vector<uint64_t>& touched) {
    using kind = codec::group_event_kind;
    namespace mf = codec::member_flags;
    auto refuse = [&](status_code c, std::string text) {
      out.refusal = status{c, std::move(text)};
      return status{};
    };
    // Members named by address: each must be a user of the app.
    std::vector<std::pair<uint64_t, uint32_t>> named;
    for (auto& m : op.members) {
      auto u = get_user(t, op.app_id, m.address);
      if (!u)
        return u.error();
      if (!*u)
        return refuse(status_code::invalid_argument,
                      "there is no user '" + m.address + "' in app '" +
                        op.app_id + "': check the member's address");
      named.emplace_back((*u)->uid, m.flags);
    }
    if (op.kind == codec::frame_type::group_create) {
      auto nv = t.get(meta, "next_gid");
      if (!nv)
        return nv.error();
      uint32_t gid = *nv && (*nv)->size() == 4 ? get_le32((*nv)->data()) : 1;
      if (auto s = t.put(meta, "next_gid", le32(gid + 1)); !s)
        return s;
      group_rec g{op.flags, op.actor_uid, op.now_ms, op.app_id, op.name};
      key_builder k;
      k.u32(gid);
      if (auto s = t.put(groups, k.view(), encode_group(g)); !s)
        return s;
      if (auto s =
            put_member(t, gid, op.actor_uid, mf::send | mf::recv | mf::admin);
          !s)
        return s;
      for (auto& [uid, flags] : named)
        if (uid != op.actor_uid)
          if (auto s = put_member(t, gid, uid,
                                  flags != 0 ? flags : mf::send | mf::recv);
              !s)
            return s;
      auto info = group_view(t, gid, g);
      if (!info)
        return info.error();
      std::vector<uint64_t> all;
      auto ms = members_of(t, gid);
      if (!ms)
        return ms.error();
      for (auto& m : *ms)
        all.push_back(m.first);
      if (auto s = group_event(t, all, gid, kind::created, op, g, info->members,
                               touched);
          !s)
        return s;
      out.info = std::move(*info);
      return {};
    }
    auto g = get_group(t, op.group_id);
    if (!g)
      return g.error();
    auto mine = member_of(t, op.group_id, op.actor_uid);
    if (!mine)
      return mine.error();
    // Non-members learn nothing about a group, not even that it exists.
    if (!*g || (*g)->app != op.app_id || !*mine)
      return refuse(status_code::not_found,
                    "you are not a member of group " +
                      std::to_string(op.group_id) +
                      ": check the group id (a member must add you)");
    auto& grp = **g;
    bool admin = (**mine & mf::admin) != 0;
    bool owner = grp.owner == op.actor_uid;
    auto before = members_of(t, op.group_id);
    if (!before)
      return before.error();
    std::vector<uint64_t> everyone;
    for (auto& m : *before)
      everyone.push_back(m.first);
    key_builder gk;
    gk.u32(op.group_id);
    switch (op.kind) {
    case codec::frame_type::group_members: {
      if (!admin)
        return refuse(status_code::permission_denied,
                      "only an admin of group " + std::to_string(op.group_id) +
                        " may change its members: ask one of its admins");
      if (op.op == codec::member_op::add) {
        for (auto& [uid, flags] : named)
          if (auto s = put_member(t, op.group_id, uid,
                                  flags != 0 ? flags : mf::send | mf::recv);
              !s)
            return s;
        for (auto& [uid, flags] : named)
          if (std::find(everyone.begin(), everyone.end(), uid) ==
              everyone.end())
            everyone.push_back(uid);
        if (auto s = group_event(t, everyone, op.group_id, kind::members_added,
                                 op, grp, op.members, touched);
            !s)
          return s;
      } else {
        for (auto& [uid, flags] : named)
          if (uid == grp.owner)
            return refuse(status_code::permission_denied,
                          "the owner cannot be removed from group " +
                            std::to_string(op.group_id) +
                            ": the owner may delete the group instead");
        // Everyone before the removal learns it, the removed included.
        if (auto s =
              group_event(t, everyone, op.group_id, kind::members_removed, op,
                          grp, op.members, touched);
            !s)
          return s;
        for (auto& [uid, flags] : named)
          if (auto s = del_member(t, op.group_id, uid); !s)
            return s;
      }
      break;
    }
    case codec::frame_type::group_leave: {
      if (owner)
        return refuse(status_code::permission_denied,
                      "the owner cannot leave group " +
                        std::to_string(op.group_id) +
                        ": delete it instead (group_delete)");
      if (auto s = group_event(t, everyone, op.group_id, kind::left, op, grp,
                               {codec::member{op.actor, **mine}}, touched);
          !s)
        return s;
      if (auto s = del_member(t, op.group_id, op.actor_uid); !s)
        return s;
      break;
    }
    case codec::frame_type::group_delete: {
      if (!owner)
        return refuse(status_code::permission_denied,
                      "only the owner of group " + std::to_string(op.group_id) +
                        " may delete it");
      if (auto s = group_event(t, everyone, op.group_id, kind::deleted, op, grp,
                               {}, touched);
          !s)
        return s;
      for (auto uid : everyone)
        if (auto s = del_member(t, op.group_id, uid); !s)
          return s;
      if (auto s = t.del(groups, gk.view()); !s)
        return s;
      out.info = codec::group_info{};
      out.info.group_id = op.group_id;
      out.info.name = grp.name;
      out.info.flags = grp.flags;
      out.info.owner = op.actor;
      return {};
    }
    case codec::frame_type::group_set: {
      if (!admin)
        return refuse(status_code::permission_denied,
                      "only an admin of group " + std::to_string(op.group_id) +
                        " may change its name or flags");
      grp.name = op.name;
      grp.flags = op.flags;
      if (auto s = t.put(groups, gk.view(), encode_group(grp)); !s)
        return s;
      if (auto s = group_event(t, everyone, op.group_id, kind::settings_changed,
                               op, grp, {}, touched);
          !s)
        return s;
      break;
    }
    default:
      return refuse(status_code::invalid_argument,
                    "not a group change: " +
                      std::string{codec::to_string(op.kind)});
    }
    auto info = group_view(t, op.group_id, grp);
    if (!info)
      return info.error();
    out.info = std::move(*info);
    return {};
  }

  /// The fan-out of a group message (see append_op). `dk` is its dedup key.
  status do_group_append(txn& t, append_op& op, append_outcome& out,
                         std::vector<uint64_t>& touched, std::string_view dk) {
    namespace mf = codec::member_flags;
    namespace gf = codec::group_flags;
    auto& m = op.msg;
    out.ts_ms = op.now_ms;
    auto g = get_group(t, m.group_id);
    if (!g)
      return g.error();
    auto mine = member_of(t, m.group_id, op.sender_uid);
    if (!mine)
      return mine.error();
    if (!*g || (*g)->app != op.app_id) {
      out.status = codec::message_status::invalid_dest;
      out.text = "there is no group " + std::to_string(m.group_id) +
                 " in app '" + op.app_id + "': check the group id";
      return {};
    }
    auto& grp = **g;
    if (!*mine && (grp.flags & gf::send_by_anyone) == 0) {
      out.status = codec::message_status::not_member;
      out.text = "you are not a member of group " + std::to_string(m.group_id) +
                 ": a group admin must add you";
      return {};
    }
    if (*mine && (grp.flags & gf::send_by_selected) != 0 &&
        (**mine & mf::send) == 0) {
      out.status = codec::message_status::not_member;
      out.text = "group " + std::to_string(m.group_id) +
                 " takes messages from selected members only, and you may "
                 "not send: ask an admin for the send permission";
      return {};
    }
    if (room_full) {
      out.status = codec::message_status::fail;
      out.text = room_text;
      return {};
    }
    auto ms = members_of(t, m.group_id);
    if (!ms)
      return ms.error();
    uint64_t ts = op.now_ms;
    uint64_t expiry_s = std::min<uint64_t>(m.expiry_s, opts.retention_s);
    uint64_t expires = ts + expiry_s * 1000;
    auto& rec = scratch_msg;
    rec.seq = 0;
    rec.ts_ms = ts;
    rec.sender = op.sender;
    rec.peer.clear(); // a group conversation is named by its id alone
    rec.group_id = m.group_id;
    rec.mid = m.mid;
    rec.flags = m.flags;
    rec.kind = m.kind;
    rec.in_reply_to = m.in_reply_to;
    rec.outgoing = false;
    rec.payload = m.payload;
    rec.file = m.file;
    // One encoding for every member: append_record writes each one's seq.
    frame_buf.clear();
    codec::encode(rec, frame_buf);
    for (auto& [uid, flags] : *ms) {
      if ((flags & mf::recv) == 0)
        continue;
      if (uid == op.sender_uid && (grp.flags & gf::recv_loopback) == 0)
        continue;
      auto rseq = append_record(t, uid, ts, expires, op.sender_uid,
                                codec::frame_type::message, {}, frame_buf);
      if (!rseq)
        return rseq.error();
      key_builder ek;
      ek.u64(expires).u64(uid).u64(*rseq);
      if (auto s = t.put(expiries, ek.view(), ""); !s)
        return s;
      touched.push_back(uid);
      ++out.receivers;
    }
    // The sender's copy (its other devices see what it sent).
    rec.peer.clear();
    rec.outgoing = true;
    frame_buf.clear();
    codec::encode(rec, frame_buf);
    auto sseq = append_record(t, op.sender_uid, ts, expires, 0,
                              codec::frame_type::message, op.device, frame_buf);
    if (!sseq)
      return sseq.error();
    std::string dv;
    put_le64(dv, *sseq);
    put_le64(dv, 0);
    put_le64(dv, 0);
    put_le64(dv, ts);
    if (auto s = t.put(dedup, dk, dv); !s)
      return s;
    out.status = codec::message_status::sent;
    out.sender_seq = *sseq;
    touched.push_back(op.sender_uid);
    return {};
  }

  /// Rewrites a stored message record (edit or retraction of `m`, decoded
  /// from `r`), keeping its place and metadata.
  status rewrite(txn& t, uint64_t uid, const log_record& r, codec::message& m,
                 const change_op& op) {
    namespace mf = codec::message_flags;
    if (op.kind == codec::update_kind::edit) {
      m.flags |= mf::edited;
      m.payload = op.payload;
    } else {
      m.flags |= mf::retracted;
      m.payload.clear();
      m.file.reset();
    }
    frame_buf.clear();
    codec::encode(m, frame_buf);
    auto [db, k] = locate(t, get_state(t, uid), uid, r.seq);
    return t.put(db, k.view(),
                 encode_record(r.ts_ms, r.expires_ms, r.other_uid, r.type,
                               r.origin_device, frame_buf));
  }

  status do_change(txn& t, change_op& op, status& refusal,
                   std::vector<uint64_t>& touched) {
    namespace mf = codec::message_flags;
    namespace gf = codec::group_flags;
    bool retract = op.kind == codec::update_kind::retract;
    const char* verb = retract ? "retracted" : "edited";
    auto refuse = [&](status_code c, std::string text) {
      refusal = status{c, std::move(text)};
      return status{};
    };
    auto what = "message " + std::to_string(op.mid);
    key_builder dk;
    dedup_key(dk, op.uid, op.device, op.mid);
    auto d = t.get(dedup, dk.view());
    if (!d)
      return d.error();
    if (!*d)
      return refuse(status_code::not_found,
                    what +
                      " was not sent from this device, or is older than "
                      "the server's retention: a message is " +
                      verb + " from the device that sent it");
    if ((*d)->size() < 32)
      return corrupt("dedup");
    uint64_t sseq = get_le64((*d)->data());
    uint64_t ruid = get_le64((*d)->data() + 8);
    uint64_t rseq = get_le64((*d)->data() + 16);
    uint64_t sent_ms = get_le64((*d)->data() + 24);
    uint64_t window_ms = uint64_t{opts.retract_window_s} * 1000;
    if (retract && op.now_ms > sent_ms + window_ms)
      return refuse(status_code::failed_precondition,
                    what + " was sent " +
                      std::to_string((op.now_ms - sent_ms) / 1000) +
                      " s ago: messages can be retracted within " +
                      std::to_string(opts.retract_window_s) +
                      " s of sending (the server's retraction window)");
    log_record r;
    auto found = load_record(t, op.uid, sseq, r);
    if (!found)
      return found.error();
    auto& m = scratch_msg;
    if (!*found || r.type != codec::frame_type::message ||
        codec::decode_body(
          reinterpret_cast<const uint8_t*>(r.frame.data()) + codec::header_size,
          r.frame.size() - codec::header_size, m) != codec::errc::ok)
      return refuse(status_code::not_found,
                    what + " is no longer in the server's log");
    if ((m.flags & mf::retracted) != 0)
      return refuse(status_code::failed_precondition,
                    what + " was retracted already: it cannot change any more");
    if (room_full)
      return refuse(status_code::resource_exhausted, room_text);
    std::string peer = m.peer; // the receiver, for a 1:1 message
    uint32_t gid = m.group_id;
    if (auto s = rewrite(t, op.uid, r, m, op); !s)
      return s;
    if (ruid != 0 && rseq != 0) {
      log_record rr;
      auto there = load_record(t, ruid, rseq, rr);
      if (!there)
        return there.error();
      if (*there && rr.type == codec::frame_type::message &&
          codec::decode_body(reinterpret_cast<const uint8_t*>(rr.frame.data()) +
                               codec::header_size,
                             rr.frame.size() - codec::header_size,
                             m) == codec::errc::ok)
        if (auto s = rewrite(t, ruid, rr, m, op); !s)
          return s;
    }
    // The update records: receivers first, then the sender's other devices.
    codec::update u;
    u.ts_ms = op.now_ms;
    u.sender = op.sender;
    u.group_id = gid;
    u.mid = op.mid;
    u.kind = op.kind;
    if (!retract)
      u.payload = op.payload;
    auto add = [&](uint64_t uid, std::string_view device) -> status {
      frame_buf.clear();
      codec::encode(u, frame_buf);
      auto seq = append_record(t, uid, op.now_ms, 0, op.uid,
                               codec::frame_type::update, device, frame_buf);
      if (!seq)
        return seq.error();
      touched.push_back(uid);
      return {};
    };
    if (gid != 0) {
      auto g = get_group(t, gid);
      if (!g)
        return g.error();
      if (*g) {
        auto ms = members_of(t, gid);
        if (!ms)
          return ms.error();
        for (auto& [uid, flags] : *ms) {
          if ((flags & codec::member_flags::recv) == 0)
            continue;
          if (uid == op.uid && ((*g)->flags & gf::recv_loopback) == 0)
            continue;
          if (auto s = add(uid, {}); !s)
            return s;
        }
      }
    } else if (ruid != 0 && !identity(t, ruid).second.empty()) {
      u.peer = op.sender;
      if (auto s = add(ruid, {}); !s)
        return s;
    }
    u.peer = gid != 0 ? std::string{} : peer;
    return add(op.uid, op.device);
  }

  status do_append(txn& t, append_op& op, append_outcome& out,
                   std::vector<uint64_t>& touched) {
    auto& m = op.msg;
    m.flags &= static_cast<uint16_t>(~codec::message_flags::server_owned);
    // A resend of the same (user, device, mid) is answered, not stored again.
    key_builder dk;
    dedup_key(dk, op.sender_uid, op.device, m.mid);
    auto d = t.get(dedup, dk.view());
    if (!d)
      return d.error();
    if (*d) {
      if ((*d)->size() < 32)
        return corrupt("dedup");
      out.status = codec::message_status::sent;
      out.duplicate = true;
      out.sender_seq = get_le64((*d)->data());
      out.receiver_uid = get_le64((*d)->data() + 8);
      out.receiver_seq = get_le64((*d)->data() + 16);
      out.ts_ms = get_le64((*d)->data() + 24);
      return {};
    }
    if (m.payload.size() > codec::max_payload) {
      // The session's decoder refuses such a frame; the store's own
      // callers get the same answer instead of a record that cannot encode.
      out.status = codec::message_status::fail;
      out.ts_ms = op.now_ms;
      out.text = "a payload of " + std::to_string(m.payload.size()) +
                 " bytes is over the limit of " +
                 std::to_string(codec::max_payload) +
                 ": send it as a file (message.file) instead";
      return {};
    }
    if (m.group_id != 0)
      return do_group_append(t, op, out, touched, dk.view());
    auto ru = uid_of(t, op.app_id, m.peer);
    if (!ru)
      return ru.error();
    if (*ru == 0) {
      out.status = codec::message_status::invalid_dest;
      out.ts_ms = op.now_ms;
      out.text = "there is no user '" + m.peer + "' in app '" + op.app_id +
                 "': check the address";
      return {};
    }
    if (room_full) {
      out.status = codec::message_status::fail;
      out.ts_ms = op.now_ms;
      out.text = room_text;
      return {};
    }
    uint64_t ruid = *ru;
    auto rstate = get_state(t, ruid);
    if (rstate.head - rstate.delivered_upto >= opts.inbox_quota) {
      out.status = codec::message_status::inbox_full;
      out.ts_ms = op.now_ms;
      out.text = "'" + m.peer + "' has " +
                 std::to_string(rstate.head - rstate.delivered_upto) +
                 " undelivered messages, the server's quota: try again "
                 "after the receiver comes online";
      return {};
    }
    uint64_t ts = op.now_ms;
    uint64_t expiry_s = std::min<uint64_t>(m.expiry_s, opts.retention_s);
    uint64_t expires = ts + expiry_s * 1000;
    // The receiver's copy.
    auto& rec = scratch_msg;
    rec.seq = 0;
    rec.ts_ms = ts;
    rec.sender = op.sender;
    rec.peer = op.sender;
    rec.group_id = 0;
    rec.mid = m.mid;
    rec.flags = m.flags;
    rec.kind = m.kind;
    rec.in_reply_to = m.in_reply_to;
    rec.outgoing = false;
    rec.payload = m.payload; // reuses the scratch's capacity
    rec.file = m.file;
    frame_buf.clear();
    codec::encode(rec, frame_buf);
    auto rseq = append_record(t, ruid, ts, expires, op.sender_uid,
                              codec::frame_type::message, {}, frame_buf);
    if (!rseq)
      return rseq.error();
    {
      key_builder ek;
      ek.u64(expires).u64(ruid).u64(*rseq);
      if (auto s = t.put(expiries, ek.view(), ""); !s)
        return s;
    }
    // The sender's copy (its other devices see what it sent).
    rec.peer = m.peer;
    rec.outgoing = true;
    frame_buf.clear();
    codec::encode(rec, frame_buf);
    auto sseq = append_record(t, op.sender_uid, ts, expires, ruid,
                              codec::frame_type::message, op.device, frame_buf);
    if (!sseq)
      return sseq.error();
    std::string dv;
    put_le64(dv, *sseq);
    put_le64(dv, ruid);
    put_le64(dv, *rseq);
    put_le64(dv, ts);
    if (auto s = t.put(dedup, dk.view(), dv); !s)
      return s;
    out.status = codec::message_status::sent;
    out.sender_seq = *sseq;
    out.receiver_uid = ruid;
    out.receiver_seq = *rseq;
    out.ts_ms = ts;
    touched.push_back(ruid);
    touched.push_back(op.sender_uid);
    return {};
  }

  /// Decodes incoming message record `r` of `my_uid` into `due`: `wanted`
  /// when its sender asked for `value` (DELIVERED, READ).
  status receipt_of(const record_view& r, uint64_t my_uid,
                    codec::message_status value, receipt_due& due) {
    auto& m = scratch_msg;
    if (codec::decode_body(
          reinterpret_cast<const uint8_t*>(r.frame.data()) + codec::header_size,
          r.frame.size() - codec::header_size, m) != codec::errc::ok)
      return corrupt("log message");
    uint16_t want = value == codec::message_status::read
                      ? codec::message_flags::read_receipt
                      : codec::message_flags::delivery_receipt;
    due.sender = r.other_uid;
    due.mid = m.mid;
    due.group_id = m.group_id;
    due.wanted = (m.flags & want) != 0 && !m.outgoing && r.other_uid != 0 &&
                 r.other_uid != my_uid;
    return {};
  }

  /// Appends a receipt (DELIVERED, READ) to the sender's log.
  status receipt(txn& t, const receipt_due& due, const std::string& me,
                 uint64_t my_uid, codec::message_status value, uint64_t now,
                 std::vector<uint64_t>& touched) {
    codec::status_update su{0, due.mid, me, 0, {}, value, now, {}};
    if (due.group_id != 0) { // per member, in the group's conversation
      su.peer.clear();
      su.group_id = due.group_id;
      su.member = me;
    }
    frame_buf.clear();
    codec::encode(su, frame_buf);
    auto seq = append_record(t, due.sender, now, 0, my_uid,
                             codec::frame_type::status_update, {}, frame_buf);
    if (!seq)
      return seq.error();
    touched.push_back(due.sender);
    return {};
  }

  /// Visits the incoming message records of `uid` in (from, to]:
  /// f(seq, record_view), the view valid during the call.
  template<class F>
  status scan_messages(txn& t, uint64_t uid, uint64_t from, uint64_t to,
                       F&& f) {
    record_view r;
    return each_record(
      t, get_state(t, uid), uid, from + 1,
      [&](uint64_t seq, std::string_view v) -> result<bool> {
        if (seq > to)
          return false;
        if (!view_record(v, r))
          return corrupt("log");
        if (r.type == codec::frame_type::message && r.device.empty())
          if (auto s = f(seq, r); !s)
            return s;
        return true;
      },
      to);
  }

  /// Appends `value` (DELIVERED, READ) receipts to the senders of the
  /// incoming messages of `uid` (address `me`) in (from, to] that asked for
  /// one; only those of 1:1 peer `peer` (0: any sender) and of group
  /// `group` (none: any conversation). A message that got EXPIRED gets no
  /// other receipt.
  status send_receipts(txn& t, uint64_t uid, const std::string& me,
                       uint64_t from, uint64_t to, codec::message_status value,
                       uint64_t now, std::vector<uint64_t>& touched,
                       uint64_t peer = 0,
                       std::optional<uint32_t> group = std::nullopt) {
    auto& dues = dues_buf;
    dues.clear();
    receipt_due due;
    if (auto s = scan_messages(
          t, uid, from, to,
          [&](uint64_t rseq, const record_view& r) -> status {
            if (peer != 0 && r.other_uid != peer)
              return {}; // (before the decode: a read scans a long log)
            if (auto s = receipt_of(r, uid, value, due); !s)
              return s;
            if (!due.wanted || (group && due.group_id != *group))
              return {};
            auto gone = is_expired(t, uid, rseq);
            if (!gone)
              return gone.error();
            if (!*gone)
              dues.push_back(due);
            return {};
          });
        !s)
      return s;
    // Appended after the scan: appending moves other users' logs, never
    // this one (a message to oneself owes no receipt).
    for (auto& d : dues)
      if (auto s = receipt(t, d, me, uid, value, now, touched); !s)
        return s;
    return {};
  }

  status do_ack(txn& t, ack_op& op, std::vector<uint64_t>& touched) {
    key_builder ck;
    ck.u64(op.uid).bytes(op.device);
    auto st = get_state(t, op.uid);
    uint64_t seq = std::min(op.seq, st.head);
    {
      // One cursor reads and writes the device's row: the put finds the
      // key on the cursor's page, with no second search from the root.
      auto c = t.open_cursor(cursors);
      if (!c)
        return c.error();
      if (auto s = c->seek(ck.view()); !s)
        return s;
      bool known =
        c->valid() && c->key() == ck.view() && c->value().size() >= 8;
      uint64_t old = known ? get_le64(c->value().data()) : 0;
      if (seq <= old && known)
        return {};
      char v[16];
      store_le64(v, seq);
      store_le64(v + 8, op.now_ms); // a device silent past the retention
                                    // is forgotten
      if (auto s = c->put(ck.view(), std::string_view{v, sizeof(v)}); !s)
        return s;
    }
    if (seq <= st.delivered_upto)
      return {};
    // Newly delivered to the user (first device to ack): DELIVERED receipts.
    auto [app, me] = identity(t, op.uid);
    uint64_t from = st.delivered_upto;
    if (auto s = send_receipts(t, op.uid, me, from, seq,
                               codec::message_status::delivered, op.now_ms,
                               touched);
        !s)
      return s;
    st = get_state(t, op.uid);
    st.delivered_upto = seq;
    return put_state(t, op.uid, st);
  }

  /// True when EXPIRED was already sent for (uid, seq).
  result<bool> is_expired(txn& t, uint64_t uid, uint64_t seq) {
    key_builder k;
    k.u64(uid).u64(seq);
    auto done = t.get(expired, k.view());
    if (!done)
      return done.error();
    return done->has_value();
  }

  /// Sends EXPIRED to the sender of incoming message record `r` of `uid`,
  /// once, unless a device of `uid` acknowledged it.
  status expire_record(txn& t, uint64_t uid, const std::string& me,
                       const log_record& r, uint64_t now,
                       std::vector<uint64_t>& touched) {
    if (r.type != codec::frame_type::message || !r.origin_device.empty() ||
        r.other_uid == 0 || r.other_uid == uid || r.expires_ms == 0 ||
        r.expires_ms >= now)
      return {};
    if (r.seq <= get_state(t, uid).delivered_upto)
      return {}; // delivered before it expired
    auto done = is_expired(t, uid, r.seq);
    if (!done)
      return done.error();
    if (*done)
      return {};
    auto& m = scratch_msg;
    if (codec::decode_body(
          reinterpret_cast<const uint8_t*>(r.frame.data()) + codec::header_size,
          r.frame.size() - codec::header_size, m) != codec::errc::ok)
      return corrupt("log message");
    codec::status_update su{0,
                            m.mid,
                            me,
                            0,
                            {},
                            codec::message_status::expired,
                            now,
                            "not delivered before its expiry: '" + me +
                              "' was offline; send it again or with a "
                              "longer expiry"};
    if (m.group_id != 0) { // per member, in the group's conversation
      su.peer.clear();
      su.group_id = m.group_id;
      su.member = me;
    }
    frame_buf.clear();
    codec::encode(su, frame_buf);
    auto s = append_record(t, r.other_uid, now, 0, uid,
                           codec::frame_type::status_update, {}, frame_buf);
    if (!s)
      return s.error();
    key_builder k;
    k.u64(uid).u64(r.seq);
    if (auto p = t.put(expired, k.view(), ""); !p)
      return p;
    touched.push_back(r.other_uid);
    return {};
  }

  result<bool> load_record(txn& t, uint64_t uid, uint64_t seq, log_record& r) {
    auto [db, k] = locate(t, get_state(t, uid), uid, seq);
    auto v = t.get(db, k.view());
    if (!v)
      return v.error();
    if (!*v)
      return false;
    if (!decode_record(**v, seq, r))
      return corrupt("log");
    return true;
  }

  status do_expire(txn& t, expire_op& op, std::vector<uint64_t>& touched) {
    auto me = identity(t, op.uid).second;
    log_record r;
    for (auto seq : op.seqs) {
      auto found = load_record(t, op.uid, seq, r);
      if (!found)
        return found.error();
      if (*found)
        if (auto s = expire_record(t, op.uid, me, r, op.now_ms, touched); !s)
          return s;
    }
    return {};
  }

  status do_sweep(txn& t, sweep_op& op, std::vector<uint64_t>& touched) {
    std::vector<std::string> due;
    {
      auto c = t.open_cursor(expiries);
      if (!c)
        return c.error();
      if (auto s = c->first(); !s)
        return s;
      while (c->valid() && due.size() < op.limit && c->key().size() == 24 &&
             get_be64(c->key().data()) < op.now_ms) {
        due.emplace_back(c->key());
        if (auto s = c->next(); !s)
          return s;
      }
    }
    log_record r;
    for (auto& key : due) {
      uint64_t uid = get_be64(key.data() + 8);
      uint64_t seq = get_be64(key.data() + 16);
      auto found = load_record(t, uid, seq, r);
      if (!found)
        return found.error();
      if (*found) {
        auto me = identity(t, uid).second;
        if (auto s = expire_record(t, uid, me, r, op.now_ms, touched); !s)
          return s;
      }
      if (auto s = t.del(expiries, key); !s)
        return s;
    }
    return {};
  }

  /// Lowest cursor over the user's devices; nullopt when it has none.
  /// Devices whose last ack is older than `forget_before` are forgotten
  /// (their cursors deleted): a device gone for longer than the retention
  /// must not keep its user's log forever. If it comes back, it starts as a
  /// new device.
  result<std::optional<uint64_t>> min_cursor(txn& t, uint64_t uid,
                                             uint64_t forget_before) {
    std::optional<uint64_t> low;
    std::vector<std::string> stale;
    {
      auto c = t.open_cursor(cursors);
      if (!c)
        return c.error();
      auto prefix = be64(uid);
      if (auto s = c->seek(prefix); !s)
        return s;
      while (c->valid() && c->key().substr(0, 8) == prefix) {
        auto v = c->value();
        if (v.size() >= 16 && get_le64(v.data() + 8) < forget_before) {
          stale.emplace_back(c->key());
        } else if (v.size() >= 8) {
          auto seq = get_le64(v.data());
          low = low ? std::min(*low, seq) : seq;
        }
        if (auto s = c->next(); !s)
          return s;
      }
    }
    for (auto& key : stale)
      if (auto s = t.del(cursors, key); !s)
        return s;
    return low;
  }

  status do_trim(txn& t, trim_op& op) {
    uint64_t retention_ms = uint64_t{opts.retention_s} * 1000;
    if (op.now_ms <= retention_ms)
      return {};
    uint64_t cutoff = op.now_ms - retention_ms;
    size_t deleted = 0;
    size_t visited = 0;
    // Users, round robin over the state table.
    std::vector<uint64_t> uids;
    {
      auto c = t.open_cursor(state);
      if (!c)
        return c.error();
      if (auto s = c->seek(be64(trim_next_uid)); !s)
        return s;
      while (c->valid() && uids.size() < 256) {
        if (c->key().size() == 8)
          uids.push_back(get_be64(c->key().data()));
        if (auto s = c->next(); !s)
          return s;
      }
      trim_next_uid = c->valid() ? get_be64(c->key().data()) : 0;
    }
    log_record r;
    for (auto uid : uids) {
      if (deleted >= op.budget)
        break;
      ++visited;
      auto low = min_cursor(t, uid, cutoff);
      if (!low)
        return low.error();
      uint64_t acked = low->value_or(0);
      std::vector<uint64_t> doomed;
      auto ust = get_state(t, uid);
      if (auto s = each_record(
            t, ust, uid, 0,
            [&](uint64_t seq, std::string_view v) -> result<bool> {
              if (deleted + doomed.size() >= op.budget)
                return false;
              if (!decode_record(v, seq, r))
                return corrupt("log");
              bool old = r.ts_ms < cutoff;
              bool done = seq <= acked ||
                          (r.expires_ms != 0 && r.expires_ms < op.now_ms);
              if (!old || !done)
                return false; // the log is in time order: nothing later
              doomed.push_back(seq);
              return true;
            });
          !s)
        return s;
      for (auto seq : doomed) {
        auto [db, where] = locate(t, ust, uid, seq);
        if (auto s = t.del(db, where.view()); !s)
          return s;
        key_builder k;
        k.u64(uid).u64(seq);
        auto e = t.del(expired, k.view());
        if (!e && e.code() != status_code::not_found)
          return e;
      }
      deleted += doomed.size();
    }
    if (visited == uids.size() && uids.size() < 256)
      trim_next_uid = 0;
    // Dedup entries older than the retention.
    std::vector<std::string> stale;
    {
      auto c = t.open_cursor(dedup);
      if (!c)
        return c.error();
      auto s = trim_next_dedup.empty() ? c->first() : c->seek(trim_next_dedup);
      if (!s)
        return s;
      size_t seen = 0;
      while (c->valid() && seen < 1000) {
        ++seen;
        if (c->value().size() >= 32 &&
            get_le64(c->value().data() + 24) < cutoff)
          stale.emplace_back(c->key());
        if (auto n = c->next(); !n)
          return n;
      }
      trim_next_dedup = c->valid() ? std::string{c->key()} : std::string{};
    }
    for (auto& key : stale)
      if (auto s = t.del(dedup, key); !s)
        return s;
    return {};
  }

  status do_read(txn& t, read_op& op, std::vector<uint64_t>& touched) {
    auto [app, me] = identity(t, op.uid);
    if (app.empty())
      return {};
    uint64_t puid = 0;
    if (op.group_id == 0) {
      auto peer = uid_of(t, app, op.peer);
      if (!peer)
        return peer.error();
      if (*peer == 0)
        return {};
      puid = *peer;
    }
    // Read marks: per peer uid, or per group (the top bit set: uids never
    // reach it).
    key_builder rk;
    rk.u64(op.uid).u64(op.group_id != 0 ? (uint64_t{1} << 63) | op.group_id
                                        : puid);
    auto mark = t.get(reads, rk.view());
    if (!mark)
      return mark.error();
    uint64_t from =
      *mark && (*mark)->size() >= 8 ? get_le64((*mark)->data()) : 0;
    auto st = get_state(t, op.uid);
    uint64_t to = std::min(op.up_to_seq, st.head);
    if (to <= from)
      return {};
    // Bound the scan of a first read in a long log.
    constexpr uint64_t max_scan = 100000;
    if (to - from > max_scan)
      from = to - max_scan;
    // The conversation: 1:1 with puid, or this group.
    if (auto s = send_receipts(t, op.uid, me, from, to,
                               codec::message_status::read, op.now_ms, touched,
                               op.group_id == 0 ? puid : 0, op.group_id);
        !s)
      return s;
    std::string v;
    put_le64(v, to);
    return t.put(reads, rk.view(), v);
  }
};

// -- server_store
// -------------------------------------------------------------------------

server_store::server_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

server_store::~server_store() = default;

result<std::unique_ptr<server_store>>
server_store::open(const std::string& dir, const server_store_options& opts) {
  if (opts.journal_epoch < 1 || opts.journal_epoch > 1024)
    return status{status_code::invalid_argument,
                  "journal epoch of " + std::to_string(opts.journal_epoch) +
                    " batches: give 1 to 1024 (" +
                    std::to_string(server_store_options{}.journal_epoch) +
                    " is the default)"};
  auto p = std::make_unique<impl>();
  p->opts = opts;
  auto e = env::open(dir, opts.env);
  if (!e)
    return e.error();
  p->e = std::move(*e);
  auto st = p->e->write([&](txn& t) -> status {
    if (auto s = open_tables(t, {{&p->meta, "meta"},
                                 {&p->apps, "apps"},
                                 {&p->users, "users"},
                                 {&p->uids, "uids"},
                                 {&p->tokens, "tokens"},
                                 {&p->user_tokens, "user_tokens"},
                                 {&p->log, "log"},
                                 {&p->state, "state"},
                                 {&p->cursors, "cursors"},
                                 {&p->dedup, "dedup"},
                                 {&p->reads, "reads"},
                                 {&p->expired, "expired"},
                                 {&p->expiries, "expiries"},
                                 {&p->groups, "groups"},
                                 {&p->members, "members"},
                                 {&p->user_groups, "user_groups"},
                                 {&p->journal[0], "journal_0"},
                                 {&p->journal[1], "journal_1"}});
        !s)
      return s;
    uint32_t found = 0;
    if (auto s =
          check_format(t, p->meta, "format", server_format_version, &found);
        !s)
      return s;
    const uint32_t was = found;
    if (found == 1) {
      if (auto s = p->migrate_1_to_2(t); !s)
        return s.annotate("migrating data directory " + dir +
                          " from format 1 to 2");
      found = 2;
    }
    // Format 2 to 3: the journal tables are new (and empty), and a state row
    // of 16 bytes has no journal segments: nothing to rewrite.
    if (found < 4)
      if (auto s = p->migrate_3_to_4(t); !s)
        return s.annotate("migrating data directory " + dir + " from format " +
                          std::to_string(was) + " to 4");
    if (found != server_format_version)
      if (auto s = set_format(t, p->meta, "format", server_format_version); !s)
        return s;
    auto g = t.get(p->meta, "jgen");
    if (!g)
      return g.error();
    p->gen = *g && (*g)->size() == 8 ? get_le64((*g)->data()) : 0;
    p->batch_gen = p->gen.load();
    // The journal's epoch length: the directory's (8 before format 4, when
    // it was a constant), or the options' once the journal was moved into
    // `log` under the old one.
    auto je = t.get(p->meta, "jepoch");
    if (!je)
      return je.error();
    if (*je && ((*je)->size() != 4 || get_be32((*je)->data()) == 0))
      return p->corrupt("meta jepoch");
    p->epoch_len = *je ? get_be32((*je)->data()) : 8;
    if (!*je || p->epoch_len != opts.journal_epoch) {
      if (p->epoch_len != opts.journal_epoch)
        if (auto s = p->move_all(t); !s)
          return s.annotate("moving the journal of " + dir + " into the log");
      p->epoch_len = opts.journal_epoch;
      std::string v;
      put_be32(v, opts.journal_epoch);
      if (auto s = t.put(p->meta, "jepoch", v); !s)
        return s;
    }
    return status{};
  });
  if (!st)
    return st;
  return std::unique_ptr<server_store>(new server_store(std::move(p)));
}

status server_store::app_add(const std::string& app_id,
                             const std::string& name) {
  if (auto s = check_name("app id", app_id, codec::max_app_id); !s)
    return s;
  return impl_->e->write([&](txn& t) -> status {
    auto s = t.put(impl_->apps, app_id, name, put_flags::no_overwrite);
    if (s.code() == status_code::already_exists)
      return status{status_code::already_exists,
                    "app '" + app_id + "' exists already"};
    return s;
  });
}

result<std::vector<uint64_t>>
server_store::app_delete(const std::string& app_id) {
  std::vector<uint64_t> deleted;
  auto st = impl_->e->write([&](txn& t) -> status {
    deleted.clear();
    auto a = t.get(impl_->apps, app_id);
    if (!a)
      return a.error();
    if (!*a)
      return status{status_code::not_found, "there is no app '" + app_id + "'"};
    std::string prefix = app_id;
    prefix.push_back('\0');
    std::vector<std::pair<std::string, uint64_t>> users;
    {
      auto c = t.open_cursor(impl_->users);
      if (!c)
        return c.error();
      if (auto s = c->seek(prefix); !s)
        return s;
      while (c->valid() && c->key().substr(0, prefix.size()) == prefix) {
        user_rec u;
        if (!decode_user(c->value(), u))
          return impl_->corrupt("user");
        users.emplace_back(std::string{c->key().substr(prefix.size())}, u.uid);
        if (auto s = c->next(); !s)
          return s;
      }
    }
    for (auto& [address, uid] : users) {
      if (auto s = impl_->delete_user(t, app_id, address, uid); !s)
        return s;
      deleted.push_back(uid);
    }
    return t.del(impl_->apps, app_id);
  });
  if (!st)
    return st;
  return deleted;
}

namespace {

status no_app(const std::string& app_id) {
  return status{status_code::not_found,
                "there is no app '" + app_id +
                  "': create it first ('parley admin app add')"};
}

} // namespace

status server_store::impl::add_user(txn& t, const std::string& app_id,
                                    const std::string& address,
                                    const std::string& name, uint32_t ttl_s,
                                    uint64_t now_ms, issued_token& out) {
  auto u = get_user(t, app_id, address);
  if (!u)
    return u.error();
  uint64_t uid;
  if (*u) {
    uid = (*u)->uid;
  } else {
    auto nv = t.get(meta, "next_uid");
    if (!nv)
      return nv.error();
    uid = *nv && (*nv)->size() == 8 ? get_le64((*nv)->data()) : 1;
    std::string next;
    put_le64(next, uid + 1);
    if (auto s = t.put(meta, "next_uid", next); !s)
      return s;
    if (auto s = t.put(users, user_key(app_id, address),
                       encode_user(user_rec{uid, false, name}));
        !s)
      return s;
    std::string id;
    id.push_back(static_cast<char>(app_id.size() & 0xff));
    id.push_back(static_cast<char>(app_id.size() >> 8));
    id += app_id;
    id += address;
    if (auto s = t.put(uids, be64(uid), id); !s)
      return s;
  }
  out.app_id = app_id;
  out.address = address;
  out.uid = uid;
  return issue_token(t, uid, app_id, ttl_s, now_ms, out);
}

result<issued_token> server_store::user_add(const std::string& app_id,
                                            const std::string& address,
                                            const std::string& name,
                                            uint32_t ttl_s, uint64_t now_ms) {
  if (auto s = check_name("user address", address, codec::max_address); !s)
    return s;
  issued_token out;
  auto st = impl_->e->write([&](txn& t) -> status {
    auto a = t.get(impl_->apps, app_id);
    if (!a)
      return a.error();
    if (!*a)
      return no_app(app_id);
    return impl_->add_user(t, app_id, address, name, ttl_s, now_ms, out);
  });
  if (!st)
    return st;
  return out;
}

result<std::vector<issued_token>>
server_store::users_add(const std::string& app_id,
                        const std::vector<std::string>& addresses,
                        uint32_t ttl_s, uint64_t now_ms) {
  std::unordered_set<std::string_view> seen;
  seen.reserve(addresses.size());
  for (auto& a : addresses) {
    if (auto s = check_name("user address", a, codec::max_address); !s)
      return s;
    if (!seen.insert(a).second)
      return status{status_code::invalid_argument,
                    "user address '" + a +
                      "' is in the list twice: give each user once"};
  }
  std::vector<issued_token> out;
  auto st = impl_->e->write([&](txn& t) -> status {
    out.assign(addresses.size(), issued_token{}); // again after a map resize
    auto a = t.get(impl_->apps, app_id);
    if (!a)
      return a.error();
    if (!*a)
      return no_app(app_id);
    for (size_t i = 0; i < addresses.size(); ++i)
      if (auto s =
            impl_->add_user(t, app_id, addresses[i], {}, ttl_s, now_ms, out[i]);
          !s)
        return s.annotate("adding user '" + addresses[i] + "'");
    return {};
  });
  if (!st)
    return st;
  return out;
}

result<issued_token> server_store::token_add(const std::string& app_id,
                                             const std::string& address,
                                             uint32_t ttl_s, uint64_t now_ms) {
  issued_token out;
  auto st = impl_->e->write([&](txn& t) -> status {
    auto u = impl_->get_user(t, app_id, address);
    if (!u)
      return u.error();
    if (!*u)
      return status{status_code::not_found, "there is no user '" + address +
                                              "' in app '" + app_id + "'"};
    out.app_id = app_id;
    out.address = address;
    out.uid = (*u)->uid;
    return impl_->issue_token(t, out.uid, app_id, ttl_s, now_ms, out);
  });
  if (!st)
    return st;
  return out;
}

result<uint64_t> server_store::token_revoke(const std::string& app_id,
                                            const std::string& address,
                                            const std::string& token) {
  uint64_t uid = 0;
  auto st = impl_->e->write([&](txn& t) -> status {
    auto u = impl_->get_user(t, app_id, address);
    if (!u)
      return u.error();
    if (!*u)
      return status{status_code::not_found, "there is no user '" + address +
                                              "' in app '" + app_id + "'"};
    uid = (*u)->uid;
    std::vector<std::string> hashes;
    if (!token.empty()) {
      hashes.push_back(sha256(token));
    } else {
      auto c = t.open_cursor(impl_->user_tokens);
      if (!c)
        return c.error();
      auto prefix = be64(uid);
      if (auto s = c->seek(prefix); !s)
        return s;
      while (c->valid() && c->key().substr(0, 8) == prefix) {
        hashes.emplace_back(c->key().substr(8));
        if (auto s = c->next(); !s)
          return s;
      }
    }
    for (auto& h : hashes) {
      auto v = t.get(impl_->tokens, h);
      if (!v)
        return v.error();
      token_rec rec;
      if (!*v || !decode_token(**v, rec) || rec.uid != uid) {
        if (!token.empty())
          return status{status_code::not_found,
                        "that token does not belong to '" + address + "'"};
        continue;
      }
      rec.revoked = true;
      if (auto s = t.put(impl_->tokens, h, encode_token(rec)); !s)
        return s;
    }
    return {};
  });
  if (!st)
    return st;
  return uid;
}

result<uint64_t> server_store::user_set_disabled(const std::string& app_id,
                                                 const std::string& address,
                                                 bool disabled) {
  uint64_t uid = 0;
  auto st = impl_->e->write([&](txn& t) -> status {
    auto u = impl_->get_user(t, app_id, address);
    if (!u)
      return u.error();
    if (!*u)
      return status{status_code::not_found, "there is no user '" + address +
                                              "' in app '" + app_id + "'"};
    auto rec = **u;
    uid = rec.uid;
    rec.disabled = disabled;
    return t.put(impl_->users, user_key(app_id, address), encode_user(rec));
  });
  if (!st)
    return st;
  return uid;
}

result<uint64_t> server_store::user_delete(const std::string& app_id,
                                           const std::string& address) {
  uint64_t uid = 0;
  auto st = impl_->e->write([&](txn& t) -> status {
    auto u = impl_->get_user(t, app_id, address);
    if (!u)
      return u.error();
    if (!*u)
      return status{status_code::not_found, "there is no user '" + address +
                                              "' in app '" + app_id + "'"};
    uid = (*u)->uid;
    return impl_->delete_user(t, app_id, address, uid);
  });
  if (!st)
    return st;
  return uid;
}

result<std::vector<app_info>> server_store::apps_list(const std::string& after,
                                                      uint32_t limit) {
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  auto c = t->open_cursor(impl_->apps);
  if (!c)
    return c.error();
  std::vector<app_info> out;
  auto s = after.empty() ? c->first() : c->seek(after);
  if (!s)
    return s;
  while (c->valid() && out.size() < limit) {
    if (c->key() != after)
      out.push_back(app_info{std::string{c->key()}, std::string{c->value()}});
    if (auto n = c->next(); !n)
      return n;
  }
  return out;
}

result<std::vector<user_info>>
server_store::users_list(const std::string& app_id, const std::string& after,
                         uint32_t limit) {
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  auto c = t->open_cursor(impl_->users);
  if (!c)
    return c.error();
  std::string prefix = app_id;
  prefix.push_back('\0');
  std::vector<user_info> out;
  if (auto s = c->seek(prefix + after); !s)
    return s;
  while (c->valid() && out.size() < limit &&
         c->key().substr(0, prefix.size()) == prefix) {
    auto address = c->key().substr(prefix.size());
    if (address != after) {
      user_rec u;
      if (!decode_user(c->value(), u))
        return impl_->corrupt("user");
      auto st = impl_->get_state(*t, u.uid);
      out.push_back(
        user_info{std::string{address}, u.name, u.uid, u.disabled, st.head});
    }
    if (auto n = c->next(); !n)
      return n;
  }
  return out;
}

namespace {

/// Runs one write op in `t`.
status run_op(server_store::impl& p, txn& t, write_op& op, write_outcome& out,
              std::vector<uint64_t>& touched) {
  return std::visit(
    [&](auto& x) -> status {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, append_op>)
        return p.do_append(t, x, out.append, touched);
      else if constexpr (std::is_same_v<T, ack_op>)
        return p.do_ack(t, x, touched);
      else if constexpr (std::is_same_v<T, read_op>)
        return p.do_read(t, x, touched);
      else if constexpr (std::is_same_v<T, expire_op>)
        return p.do_expire(t, x, touched);
      else if constexpr (std::is_same_v<T, sweep_op>)
        return p.do_sweep(t, x, touched);
      else if constexpr (std::is_same_v<T, group_op>)
        return p.do_group(t, x, out.group, touched);
      else if constexpr (std::is_same_v<T, change_op>)
        return p.do_change(t, x, out.refusal, touched);
      else
        return p.do_trim(t, x);
    },
    op);
}

} // namespace

status server_store::apply(std::vector<write_op>& ops,
                           std::vector<write_outcome>& out,
                           std::vector<uint64_t>& touched,
                           std::vector<uint64_t>* heads,
                           std::vector<appended_record>* appended) {
  impl_->measure_room();
  struct collecting {
    impl* p;
    collecting(impl* x, std::vector<appended_record>* a) : p(x) {
      p->appended = a;
    }
    ~collecting() { p->appended = nullptr; }
  } collect{impl_.get(), appended};
  if (appended != nullptr)
    appended->clear();
  auto unique = [&] {
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  };
  auto read_heads = [&](txn& t) {
    if (heads == nullptr)
      return;
    heads->resize(touched.size());
    for (size_t i = 0; i < touched.size(); ++i)
      (*heads)[i] = impl_->get_state(t, touched[i]).head;
  };
  // The whole batch in one transaction and one sync (group commit), under
  // the next journal gen; the first batch of an epoch moves the previous
  // epoch into the log first.
  auto& p = *impl_;
  auto st = impl_->e->write([&](txn& t) -> status {
    // The callback may run again after the map grew: start clean.
    out.assign(ops.size(), write_outcome{});
    touched.clear();
    if (appended != nullptr)
      appended->clear();
    p.state_cache.clear();
    p.pending.clear();
    p.pending_arena.clear();
    p.spilled = false;
    p.spill_status = {};
    p.batch_txn.store(&t, std::memory_order_relaxed);
    struct uncache {
      server_store::impl& p;
      ~uncache() {
        p.batch_txn.store(nullptr, std::memory_order_relaxed);
        p.state_cache.clear();
        p.pending.clear();
        p.pending_arena.clear();
      }
    } uncache_at_exit{p};
    size_t appends = 0;
    for (auto& op : ops)
      appends += std::holds_alternative<append_op>(op) ? 1 : 0;
    p.batch_gen = p.next_gen(p.gen, appends);
    if (auto s = p.move_share(t, p.gen, p.batch_gen); !s)
      return s;
    {
      std::string v;
      put_le64(v, p.batch_gen);
      if (auto s = t.put(p.meta, "jgen", v); !s)
        return s;
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      if (auto s = run_op(*impl_, t, ops[i], out[i], touched); !s)
        return s; // (a full map: env::write grows it and runs us again)
    }
    unique();
    read_heads(t); // in the batch's own transaction: no second lookup
    if (!p.spill_status)
      return p.spill_status;
    if (auto s = p.spill(t); !s)
      return s;
    return p.flush_states(t);
  });
  // Committed: the gen is spent. Otherwise other writes (and the one-by-one
  // runs below) append under the last committed gen.
  if (st)
    p.gen = p.batch_gen.load();
  else
    p.batch_gen = p.gen.load();
  if (!st && ops.size() > 1) {
    // One op failed the batch. Run each alone so that only the failing ops
    // fail: a corrupt record of one user must not refuse everyone's
    // messages. (Slow, but only on this path.)
    status first_error;
    touched.clear();
    if (appended != nullptr)
      appended->clear();
    std::vector<appended_record> its;
    impl_->appended = appended != nullptr ? &its : nullptr;
    for (size_t i = 0; i < ops.size(); ++i) {
      std::vector<uint64_t> mine;
      auto one = impl_->e->write([&](txn& t) -> status {
        out[i] = write_outcome{};
        mine.clear();
        its.clear();
        return run_op(*impl_, t, ops[i], out[i], mine);
      });
      if (one) {
        touched.insert(touched.end(), mine.begin(), mine.end());
        if (appended != nullptr)
          appended->insert(appended->end(),
                           std::make_move_iterator(its.begin()),
                           std::make_move_iterator(its.end()));
      } else {
        out[i].st = one;
        if (first_error.ok())
          first_error = one;
      }
    }
    st = first_error;
    unique();
    if (heads != nullptr) {
      heads->clear();
      if (auto t = impl_->e->begin_read(); t)
        read_heads(*t);
      else // unknown: the readers look for themselves
        heads->assign(touched.size(), ~uint64_t{0});
    }
  } else if (!st) {
    out.assign(ops.size(), write_outcome{st, {}, {}, {}});
    touched.clear();
    if (heads != nullptr)
      heads->clear();
    if (appended != nullptr)
      appended->clear();
  }
  return st;
}

token_check server_store::check_token(const std::string& app_id,
                                      const std::string& token,
                                      uint64_t now_ms) {
  token_check out;
  auto t = impl_->e->begin_read();
  if (!t) {
    out.reason = codec::login_failure_reason::unavailable;
    return out;
  }
  auto app = t->get(impl_->apps, app_id);
  if (!app || !*app) {
    out.reason = codec::login_failure_reason::unknown_app;
    return out;
  }
  auto h = sha256(token);
  auto v = t->get(impl_->tokens, h);
  token_rec rec;
  if (!v || !*v || !decode_token(**v, rec)) {
    out.reason = codec::login_failure_reason::unknown_token;
    return out;
  }
  if (rec.app != app_id) {
    out.reason = codec::login_failure_reason::other_app;
    return out;
  }
  if (rec.revoked) {
    out.reason = codec::login_failure_reason::revoked;
    return out;
  }
  if (rec.expires_ms != 0 && rec.expires_ms <= now_ms) {
    out.reason = codec::login_failure_reason::expired;
    return out;
  }
  auto [app2, address] = impl_->identity(*t, rec.uid);
  auto u = impl_->get_user(*t, app_id, address);
  if (!u || !*u) {
    out.reason = codec::login_failure_reason::unknown_token;
    return out;
  }
  if ((*u)->disabled) {
    out.reason = codec::login_failure_reason::user_disabled;
    return out;
  }
  out.ok = true;
  out.uid = rec.uid;
  out.address = address;
  out.expires_ms = rec.expires_ms;
  out.token_id = to_hex(h);
  return out;
}

bool server_store::token_valid(const std::string& token_id, uint64_t now_ms) {
  auto t = impl_->e->begin_read();
  if (!t)
    return true; // cannot tell: do not end a session on a read failure
  auto v = t->get(impl_->tokens, from_hex(token_id));
  token_rec rec;
  if (!v || !*v || !decode_token(**v, rec))
    return false;
  if (rec.revoked || (rec.expires_ms != 0 && rec.expires_ms <= now_ms))
    return false;
  auto [app, address] = impl_->identity(*t, rec.uid);
  auto u = impl_->get_user(*t, app, address);
  return u && *u && !(*u)->disabled;
}

result<codec::group_info> server_store::group_get(uint64_t uid,
                                                  uint32_t group_id) {
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  auto g = impl_->get_group(*t, group_id);
  if (!g)
    return g.error();
  auto mine = impl_->member_of(*t, group_id, uid);
  if (!mine)
    return mine.error();
  if (!*g || !*mine)
    return status{status_code::not_found,
                  "you are not a member of group " + std::to_string(group_id) +
                    ": check the group id (a member must add you)"};
  return impl_->group_view(*t, group_id, **g);
}

result<std::vector<uint64_t>> server_store::group_receivers(uint64_t uid,
                                                            uint32_t group_id) {
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  auto g = impl_->get_group(*t, group_id);
  if (!g)
    return g.error();
  auto mine = impl_->member_of(*t, group_id, uid);
  if (!mine)
    return mine.error();
  if (!*g || !*mine)
    return status{status_code::not_found,
                  "you are not a member of group " + std::to_string(group_id) +
                    ": check the group id (a member must add you)"};
  auto ms = impl_->members_of(*t, group_id);
  if (!ms)
    return ms.error();
  std::vector<uint64_t> out;
  out.reserve(ms->size());
  for (auto& [member, flags] : *ms)
    if (member != uid && (flags & codec::member_flags::recv) != 0)
      out.push_back(member);
  return out;
}

result<std::vector<codec::group_summary>>
server_store::groups_of(uint64_t uid) {
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  std::vector<codec::group_summary> out;
  auto c = t->open_cursor(impl_->user_groups);
  if (!c)
    return c.error();
  auto prefix = be64(uid);
  if (auto s = c->seek(prefix); !s)
    return s;
  while (c->valid() && c->key().substr(0, 8) == prefix) {
    if (c->key().size() < 12)
      return impl_->corrupt("user group");
    uint32_t gid = get_be32(c->key().data() + 8);
    auto g = impl_->get_group(*t, gid);
    if (!g)
      return g.error();
    auto mine = impl_->member_of(*t, gid, uid);
    if (!mine)
      return mine.error();
    if (*g && *mine)
      out.push_back(codec::group_summary{gid, (*g)->name, (*g)->flags, **mine});
    if (auto s = c->next(); !s)
      return s;
  }
  return out;
}

uint64_t server_store::head(uint64_t uid) {
  auto t = impl_->e->begin_read();
  if (!t)
    return 0;
  return impl_->get_state(*t, uid).head;
}

uint64_t server_store::cursor(uint64_t uid, const std::string& device,
                              bool* known) {
  if (known != nullptr)
    *known = false;
  auto t = impl_->e->begin_read();
  if (!t)
    return 0;
  key_builder ck;
  ck.u64(uid).bytes(device);
  auto v = t->get(impl_->cursors, ck.view());
  if (v && *v && (*v)->size() >= 8) {
    if (known != nullptr)
      *known = true;
    return get_le64((*v)->data());
  }
  // A new device starts where the user's least advanced device stands, so it
  // gets what is undelivered; older history comes through sync.
  auto c = t->open_cursor(impl_->cursors);
  if (!c)
    return 0;
  auto prefix = be64(uid);
  if (!c->seek(prefix))
    return 0;
  bool any = false;
  uint64_t low = 0;
  while (c->valid() && c->key().substr(0, 8) == prefix) {
    if (c->value().size() >= 8) {
      auto seq = get_le64(c->value().data());
      low = any ? std::min(low, seq) : seq;
      any = true;
    }
    if (!c->next())
      break;
  }
  return low;
}

status server_store::read_log(uint64_t uid, uint64_t after, size_t max_records,
                              size_t max_bytes, std::vector<log_record>& out,
                              uint64_t* delivered_upto, uint64_t now_ms) {
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  auto st = impl_->get_state(*t, uid);
  if (delivered_upto != nullptr)
    *delivered_upto = st.delivered_upto;
  size_t bytes = 0;
  return impl_->each_record(
    *t, st, uid, after + 1,
    [&](uint64_t seq, std::string_view v) -> result<bool> {
      if (out.size() >= max_records || bytes >= max_bytes)
        return false;
      out.emplace_back();
      auto& r = out.back();
      if (!decode_record(v, seq, r))
        return impl_->corrupt("log");
      if (now_ms != 0 && r.expires_ms != 0 && r.expires_ms < now_ms) {
        auto gone = impl_->is_expired(*t, uid, r.seq);
        r.expired = gone && *gone;
      }
      bytes += r.frame.size();
      return true;
    });
}

status server_store::read_conversation(uint64_t uid, const std::string& peer,
                                       uint32_t group_id, uint64_t before_seq,
                                       size_t count, size_t scan_budget,
                                       size_t max_bytes,
                                       codec::sync_page& page) {
  namespace mf = codec::message_flags;
  page.messages.clear();
  page.complete = false;
  page.resume_before = 0;
  auto t = impl_->e->begin_read();
  if (!t)
    return t.error();
  // Changes seen so far (newer than what follows): (sender, mid) -> update.
  std::map<std::pair<std::string, uint64_t>, codec::update> changes;
  auto mine = [&](const std::string& p, uint32_t g) {
    return group_id != 0 ? g == group_id : (g == 0 && p == peer);
  };
  log_record r;
  codec::update u;
  size_t scanned = 0;
  size_t bytes = 0;
  uint64_t last_seq = 0;
  bool stopped = false;
  auto st = impl_->each_record_back(
    *t, impl_->get_state(*t, uid), uid, before_seq,
    [&](uint64_t seq, std::string_view v) -> result<bool> {
    if (page.messages.size() >= count || scanned >= scan_budget ||
        bytes >= max_bytes) {
      page.resume_before = last_seq;
      stopped = true;
      return false;
    }
    ++scanned;
    last_seq = seq;
    if (!decode_record(v, seq, r))
      return impl_->corrupt("log");
    auto body = reinterpret_cast<const uint8_t*>(r.frame.data());
    auto len = r.frame.size();
    if (len < codec::header_size)
      return impl_->corrupt("log");
    body += codec::header_size;
    len -= codec::header_size;
    if (r.type == codec::frame_type::update) {
      if (codec::decode_body(body, len, u) != codec::errc::ok)
        return impl_->corrupt("log update");
      if (mine(u.peer, u.group_id))
        changes.emplace(std::make_pair(u.sender, u.mid), u); // newest wins
    } else if (r.type == codec::frame_type::message) {
      codec::message m;
      if (codec::decode_body(body, len, m) != codec::errc::ok)
        return impl_->corrupt("log message");
      bool gone = false;
      if (!m.outgoing && r.expires_ms != 0) {
        auto e = impl_->is_expired(*t, uid, seq);
        gone = e && *e;
      }
      if (mine(m.peer, m.group_id) && !gone) {
        auto ch = changes.find({m.sender, m.mid});
        if (ch != changes.end()) {
          if (ch->second.kind == codec::update_kind::retract) {
            m.flags |= mf::retracted;
            m.payload.clear();
            m.file.reset();
          } else if ((m.flags & mf::retracted) == 0) {
            m.flags |= mf::edited;
            m.payload = ch->second.payload;
          }
        }
        bytes += m.payload.size() + 128;
        page.messages.push_back(std::move(m));
      }
    }
    return true;
  });
  if (!st)
    return st;
  page.complete = !stopped;
  return {};
}

uint64_t server_store::uid_of(const std::string& app_id,
                              const std::string& address) {
  auto t = impl_->e->begin_read();
  if (!t)
    return 0;
  auto u = impl_->get_user(*t, app_id, address);
  return u && *u ? (*u)->uid : 0;
}

status server_store::flush_journal() {
  auto& p = *impl_;
  return p.e->write([&](txn& t) -> status { return p.move_all(t); });
}

status server_store::sync() {
  return impl_->e->sync();
}

env& server_store::environment() {
  return *impl_->e;
}

uint64_t server_store::log_size(uint64_t uid) {
  auto t = impl_->e->begin_read();
  if (!t)
    return 0;
  uint64_t n = 0;
  impl_->each_record(*t, impl_->get_state(*t, uid), uid, 0,
                     [&](uint64_t, std::string_view) -> result<bool> {
                       ++n;
                       return true;
                     });
  return n;
}

} // namespace parley::store
