// The server's tables: tokens, the per-user log, cursors, receipts, expiry,
// trimming. Pure store tests: no actors, no sockets, time passed in.

#include "store/server_store.hpp"

#include "codec/codec.hpp"
#include "store/keys.hpp"
#include "store/segments.hpp"
#include "tests/support/temp_dir.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <set>

using namespace parley;
using namespace parley::store;
using codec::message_status;
using lr = codec::login_failure_reason;

namespace {

constexpr uint64_t t0 = 1'800'000'000'000; // a fixed "now", ms

struct fixture {
  test::temp_dir dir;
  server_store_options opts;
  std::unique_ptr<server_store> db;
  issued_token alice, bob;

  explicit fixture(uint64_t quota = 100000,
                   std::function<void(server_store_options&)> tweak = nullptr) {
    opts.env.sync = false;
    opts.inbox_quota = quota;
    if (tweak)
      tweak(opts);
    auto s = server_store::open(dir.path(), opts);
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
    db = std::move(*s);
    REQUIRE(db->app_add("demo", "Demo").ok());
    alice = *db->user_add("demo", "alice", "Alice", 0, t0);
    bob = *db->user_add("demo", "bob", "Bob", 0, t0);
  }

  std::vector<write_outcome> apply(std::vector<write_op> ops) {
    std::vector<write_outcome> out;
    std::vector<uint64_t> touched, heads;
    std::vector<appended_record> appended;
    auto st = db->apply(ops, out, touched, &heads, &appended);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    REQUIRE(out.size() == ops.size());
    // Every batch: the touched users once each, ascending, with the heads
    // of their logs after it (what the sessions are told).
    REQUIRE(heads.size() == touched.size());
    CHECK(std::is_sorted(touched.begin(), touched.end()));
    CHECK(std::adjacent_find(touched.begin(), touched.end()) == touched.end());
    for (size_t i = 0; i < touched.size(); ++i)
      CHECK(heads[i] == db->head(touched[i]));
    // ... and the records it appended, exactly as the log holds them
    // (sessions stream those without reading them back).
    for (auto& a : appended) {
      CHECK(std::binary_search(touched.begin(), touched.end(), a.uid));
      std::vector<log_record> stored;
      REQUIRE(db->read_log(a.uid, a.rec.seq - 1, 1, 1 << 20, stored).ok());
      REQUIRE(stored.size() == 1);
      CHECK(stored[0].seq == a.rec.seq);
      CHECK(stored[0].ts_ms == a.rec.ts_ms);
      CHECK(stored[0].expires_ms == a.rec.expires_ms);
      CHECK(stored[0].other_uid == a.rec.other_uid);
      CHECK(stored[0].origin_device == a.rec.origin_device);
      CHECK(stored[0].type == a.rec.type);
      CHECK(stored[0].frame == a.rec.frame);
    }
    return out;
  }

  /// A message from `from` (address `sender`) to `to`, sent at t0.
  static append_op message(uint64_t from, const std::string& sender,
                           const std::string& device, uint64_t mid,
                           const std::string& to, uint16_t flags,
                           const std::string& payload) {
    append_op op;
    op.sender_uid = from;
    op.app_id = "demo";
    op.sender = sender;
    op.device = device;
    op.msg.mid = mid;
    op.msg.peer = to;
    op.msg.flags = flags;
    op.msg.expiry_s = codec::default_expiry_s;
    op.msg.payload = payload;
    op.now_ms = t0;
    return op;
  }

  append_outcome send(uint64_t mid, const std::string& to,
                      const std::string& payload, uint64_t now = t0,
                      uint16_t flags = codec::message_flags::delivery_receipt |
                                       codec::message_flags::read_receipt,
                      uint32_t expiry = codec::default_expiry_s,
                      const std::string& device = "a1") {
    auto op = message(alice.uid, "alice", device, mid, to, flags, payload);
    op.msg.expiry_s = expiry;
    op.now_ms = now;
    auto out = apply({op});
    REQUIRE(out[0].st.ok());
    return out[0].append;
  }

  std::vector<log_record> log_of(uint64_t uid, uint64_t after = 0) {
    std::vector<log_record> out;
    REQUIRE(db->read_log(uid, after, 1000, 1 << 20, out).ok());
    return out;
  }

  template<class Frame>
  Frame decode(const log_record& r) {
    Frame f;
    REQUIRE(
      codec::decode_body(
        reinterpret_cast<const uint8_t*>(r.frame.data()) + codec::header_size,
        r.frame.size() - codec::header_size, f) == codec::errc::ok);
    return f;
  }

  /// Statuses in alice's log, in order.
  std::vector<codec::status_update> receipts() {
    std::vector<codec::status_update> out;
    for (auto& r : log_of(alice.uid))
      if (r.type == codec::frame_type::status_update)
        out.push_back(decode<codec::status_update>(r));
    return out;
  }
};

/// Appends `x` as 8 little-endian bytes (format 3's state rows).
void append_le64(std::string& out, uint64_t x) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(x >> (8 * i)));
}

/// Rewrites every state row in format 3's layout (u64 LE head and
/// delivered_upto, then u64 LE gen and first per segment; formats 1 and 2:
/// 16 bytes, no segments), counting the rows and those with segments.
status to_v3_state_rows(txn& t, dbi state, size_t& rows,
                        size_t& with_segments) {
  auto c = t.open_cursor(state);
  if (!c)
    return c.error();
  std::vector<std::pair<std::string, std::string>> v3;
  for (auto s = c->first(); s && c->valid(); s = c->next()) {
    uint64_t head = 0, delivered = 0;
    segment_list<16> segs;
    if (!decode_state_row(c->value(), head, delivered, segs))
      return status{status_code::corruption, "state row"};
    std::string row;
    auto le64 = [&](uint64_t x) { append_le64(row, x); };
    le64(head);
    le64(delivered);
    for (auto& sg : segs) {
      le64(sg.gen);
      le64(sg.first);
    }
    with_segments += !segs.empty();
    v3.emplace_back(std::string{c->key()}, row);
  }
  for (auto& [k, v] : v3)
    if (auto s = t.put(state, k, v); !s)
      return s;
  rows = v3.size();
  return {};
}

} // namespace

TEST_CASE("segment_list: inline, then on the heap, copies independent") {
  segment_list<4> a;
  CHECK(a.empty());
  for (uint64_t g = 1; g <= 4; ++g)
    a.push_back(segment{g, g * 10});
  CHECK(!a.on_heap());
  segment_list<4> inl = a;
  a.push_back(segment{5, 50}); // outgrows the inline room
  CHECK(a.on_heap());
  REQUIRE(a.size() == 5);
  for (uint64_t i = 0; i < 5; ++i)
    CHECK((a[i].gen == i + 1 && a[i].first == (i + 1) * 10));
  CHECK(a.back().gen == 5);
  segment_list<4> b = a; // a heap copy
  b.erase_front(b.begin() + 2);
  REQUIRE(b.size() == 3);
  CHECK(b[0].gen == 3);
  CHECK(a.size() == 5); // untouched by b
  inl.erase_front(inl.begin() + 1);
  REQUIRE(inl.size() == 3);
  CHECK((inl[0].gen == 2 && inl.back().gen == 4));
  inl = a; // inline <- heap
  CHECK((inl.on_heap() && inl.size() == 5));
  segment_list<4> c;
  c.push_back(segment{9, 90});
  inl = c; // heap <- inline
  CHECK((!inl.on_heap() && inl.size() == 1 && inl[0].gen == 9));
  inl.erase_front(inl.end());
  CHECK(inl.empty());
  uint64_t sum = 0;
  for (auto& sg : a)
    sum += sg.gen;
  CHECK(sum == 15);
}

TEST_CASE("state row: varints; a busy user's two epochs of segments take "
          "2 bytes each, and any list round-trips") {
  segment_list<16> segs;
  for (uint64_t g = 0; g < 16; ++g) // gens 1000..1015, 3 records a gen
    segs.push_back(segment{1000 + g, 400 + 3 * g});
  std::string row;
  encode_state_row(row, 447, 440, segs);
  // head, delivered_upto: 2 bytes each; the first segment 2 + 2; the
  // others 1 + 1.
  CHECK(row.size() == 2 + 2 + 4 + 15 * 2);
  uint64_t head = 0, delivered = 0;
  segment_list<16> back;
  REQUIRE(decode_state_row(row, head, delivered, back));
  CHECK(head == 447);
  CHECK(delivered == 440);
  REQUIRE(back.size() == 16);
  for (size_t i = 0; i < 16; ++i)
    CHECK((back[i].gen == segs[i].gen && back[i].first == segs[i].first));

  // Not ascending, and the extremes: the differences wrap around.
  segment_list<16> odd;
  odd.push_back(segment{UINT64_MAX, 5});
  odd.push_back(segment{3, UINT64_MAX});
  odd.push_back(segment{3, 0});
  encode_state_row(row, UINT64_MAX, 0, odd);
  segment_list<16> odd_back;
  REQUIRE(decode_state_row(row, head, delivered, odd_back));
  CHECK((head == UINT64_MAX && delivered == 0));
  REQUIRE(odd_back.size() == 3);
  for (size_t i = 0; i < 3; ++i)
    CHECK((odd_back[i].gen == odd[i].gen && odd_back[i].first == odd[i].first));

  // No segments: two bytes.
  encode_state_row(row, 0, 0, segment_list<16>{});
  CHECK(row == std::string(2, '\0'));

  // Malformed: a varint cut short, one longer than 10 bytes, a segment
  // without its first seq.
  segment_list<16> bad;
  CHECK_FALSE(decode_state_row(std::string{"\x80"}, head, delivered, bad));
  CHECK_FALSE(
    decode_state_row(std::string(11, '\x80') + '\x01', head, delivered, bad));
  // Ten bytes whose last carries more than the 64th bit.
  CHECK_FALSE(decode_state_row(std::string(9, '\xff') + '\x02' + '\x00', head,
                               delivered, bad));
  CHECK_FALSE(
    decode_state_row(std::string{"\x01\x01\x05"}, head, delivered, bad));
}

TEST_CASE("state row: format 3's fixed layout reads for the migration") {
  std::string v3;
  auto le64 = [&](uint64_t x) { append_le64(v3, x); };
  le64(9);
  le64(7);
  le64(300);
  le64(8);
  uint64_t head = 0, delivered = 0;
  segment_list<16> segs;
  REQUIRE(decode_state_row_v3(v3, head, delivered, segs));
  CHECK((head == 9 && delivered == 7));
  REQUIRE(segs.size() == 1);
  CHECK((segs[0].gen == 300 && segs[0].first == 8));
  segment_list<16> none;
  CHECK(decode_state_row_v3(v3.substr(0, 16), head, delivered, none));
  CHECK(none.empty());
  CHECK_FALSE(decode_state_row_v3(v3.substr(0, 24), head, delivered, none));
  CHECK_FALSE(decode_state_row_v3(v3.substr(0, 8), head, delivered, none));
}

TEST_CASE("tokens: every login failure has its reason") {
  fixture f;
  auto ok = f.db->check_token("demo", f.alice.token, t0);
  CHECK(ok.ok);
  CHECK(ok.address == "alice");
  CHECK(ok.uid == f.alice.uid);
  CHECK(f.db->check_token("nope", f.alice.token, t0).reason == lr::unknown_app);
  CHECK(f.db->check_token("demo", "pt_wrong", t0).reason == lr::unknown_token);
  REQUIRE(f.db->app_add("other", "").ok());
  auto carol = f.db->user_add("other", "carol", "", 0, t0);
  REQUIRE(carol.ok());
  CHECK(f.db->check_token("demo", carol->token, t0).reason == lr::other_app);
  auto short_lived = f.db->user_add("demo", "dave", "", 60, t0);
  REQUIRE(short_lived.ok());
  CHECK(f.db->check_token("demo", short_lived->token, t0 + 59'000).ok);
  CHECK(f.db->check_token("demo", short_lived->token, t0 + 60'000).reason ==
        lr::expired);
  REQUIRE(f.db->token_revoke("demo", "bob", f.bob.token).ok());
  CHECK(f.db->check_token("demo", f.bob.token, t0).reason == lr::revoked);
  REQUIRE(f.db->user_set_disabled("demo", "alice", true).ok());
  CHECK(f.db->check_token("demo", f.alice.token, t0).reason ==
        lr::user_disabled);
  CHECK(!f.db->token_valid(ok.token_id, t0));
  REQUIRE(f.db->user_set_disabled("demo", "alice", false).ok());
  CHECK(f.db->token_valid(ok.token_id, t0));
}

TEST_CASE("admin: names are checked, duplicates refused, deletes cascade") {
  fixture f;
  CHECK(f.db->app_add("demo", "").code() == status_code::already_exists);
  CHECK(f.db->app_add("", "").code() == status_code::invalid_argument);
  CHECK(f.db->app_add(std::string(65, 'x'), "").code() ==
        status_code::invalid_argument);
  CHECK(f.db->user_add("nope", "x", "", 0, t0).error().code() ==
        status_code::not_found);
  CHECK(
    f.db->user_add("demo", std::string(65, 'a'), "", 0, t0).error().code() ==
    status_code::invalid_argument);
  // user add of an existing user issues another token for the same uid.
  auto again = f.db->user_add("demo", "alice", "", 0, t0);
  REQUIRE(again.ok());
  CHECK(again->uid == f.alice.uid);
  CHECK(again->token != f.alice.token);
  f.send(1, "bob", "hi");
  auto users = f.db->users_list("demo", "", 100);
  REQUIRE(users.ok());
  CHECK(users->size() == 2);
  REQUIRE(f.db->user_delete("demo", "bob").ok());
  CHECK(f.db->uid_of("demo", "bob") == 0);
  CHECK(f.db->log_size(f.bob.uid) == 0);
  CHECK(!f.db->check_token("demo", f.bob.token, t0).ok);
  auto deleted = f.db->app_delete("demo");
  REQUIRE(deleted.ok());
  CHECK(deleted->size() == 1);
  CHECK(f.db->check_token("demo", f.alice.token, t0).reason == lr::unknown_app);
}

TEST_CASE("admin: users_add creates many users in one go, all or nothing") {
  fixture f;
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i)
    names.push_back("u" + std::to_string(i));
  names.push_back("alice"); // exists: found, given another token
  auto r = f.db->users_add("demo", names, 60, t0);
  REQUIRE(r.ok());
  REQUIRE(r->size() == names.size());
  std::set<uint64_t> uids;
  for (size_t i = 0; i < names.size(); ++i) {
    CHECK((*r)[i].address == names[i]);
    CHECK((*r)[i].expires_ms == t0 + 60'000);
    auto ok = f.db->check_token("demo", (*r)[i].token, t0);
    CHECK(ok.ok);
    CHECK(ok.address == names[i]);
    CHECK(ok.uid == (*r)[i].uid);
    uids.insert((*r)[i].uid);
  }
  CHECK(uids.size() == names.size());
  CHECK(r->back().uid == f.alice.uid);
  CHECK(f.db->check_token("demo", f.alice.token, t0).ok); // still valid
  auto listed = f.db->users_list("demo", "", 1000);
  REQUIRE(listed.ok());
  CHECK(listed->size() == 302); // alice, bob and 300 new
  // Refused as a whole: a repeat, a malformed address, a missing app.
  auto dup = f.db->users_add("demo", {"v1", "v2", "v1"}, 0, t0);
  CHECK(dup.error().code() == status_code::invalid_argument);
  CHECK(dup.error().message().find("'v1' is in the list twice") !=
        std::string::npos);
  auto bad = f.db->users_add("demo", {"v1", std::string(65, 'a')}, 0, t0);
  CHECK(bad.error().code() == status_code::invalid_argument);
  CHECK(f.db->users_add("nope", {"v1"}, 0, t0).error().code() ==
        status_code::not_found);
  CHECK(f.db->uid_of("demo", "v1") == 0);
  CHECK(f.db->users_add("demo", {}, 0, t0)->empty());
}

TEST_CASE("append: both logs in one step, resend deduplicated") {
  fixture f;
  auto a = f.send(7, "bob", "hello");
  CHECK(a.status == message_status::sent);
  CHECK(!a.duplicate);
  CHECK(a.receiver_uid == f.bob.uid);
  CHECK(a.receiver_seq == 1);
  CHECK(a.sender_seq == 1);
  CHECK(a.ts_ms == t0);
  auto in = f.log_of(f.bob.uid);
  REQUIRE(in.size() == 1);
  auto m = f.decode<codec::message>(in[0]);
  CHECK(m.seq == 1);
  CHECK(m.sender == "alice");
  CHECK(m.peer == "alice");
  CHECK(!m.outgoing);
  CHECK(in[0].origin_device.empty());
  CHECK(in[0].other_uid == f.alice.uid);
  auto out = f.log_of(f.alice.uid);
  REQUIRE(out.size() == 1);
  auto o = f.decode<codec::message>(out[0]);
  CHECK(o.outgoing);
  CHECK(o.peer == "bob");
  CHECK(out[0].origin_device == "a1");
  // The same (user, device, mid) again: answered, not stored.
  auto dup = f.send(7, "bob", "hello");
  CHECK(dup.duplicate);
  CHECK(dup.receiver_seq == 1);
  CHECK(f.db->head(f.bob.uid) == 1);
  // The same mid from another device is another message.
  auto other = f.send(7, "bob", "hello", t0, 0, codec::default_expiry_s, "a2");
  CHECK(!other.duplicate);
  CHECK(f.db->head(f.bob.uid) == 2);
}

TEST_CASE("append: INVALIDDEST and INBOXFULL") {
  fixture f{2};
  CHECK(f.send(1, "nobody", "x").status == message_status::invalid_dest);
  CHECK(f.send(2, "bob", "x").status == message_status::sent);
  CHECK(f.send(3, "bob", "x").status == message_status::sent);
  auto full = f.send(4, "bob", "x");
  CHECK(full.status == message_status::inbox_full);
  CHECK(full.text.find("quota") != std::string::npos);
  f.apply({ack_op{f.bob.uid, "b1", 2, t0}});
  CHECK(f.send(5, "bob", "x").status == message_status::sent);
}

TEST_CASE("ack: cursor, one DELIVERED per message, only when asked for") {
  fixture f;
  f.send(1, "bob", "wants receipts");
  f.send(2, "bob", "no receipts", t0, 0);
  f.apply({ack_op{f.bob.uid, "phone", 2, t0}});
  CHECK(f.db->cursor(f.bob.uid, "phone") == 2);
  auto r = f.receipts();
  REQUIRE(r.size() == 1);
  CHECK(r[0].mid == 1);
  CHECK(r[0].value == message_status::delivered);
  CHECK(r[0].peer == "bob");
  CHECK(r[0].seq == 3); // after alice's two outgoing copies
  // A second device acking the same range sends nothing more.
  f.apply({ack_op{f.bob.uid, "laptop", 2, t0}});
  CHECK(f.receipts().size() == 1);
  // A new device starts at the least advanced known cursor.
  f.apply({ack_op{f.bob.uid, "tablet", 1, t0}});
  bool known = true;
  CHECK(f.db->cursor(f.bob.uid, "watch", &known) == 1);
  CHECK(!known);
  CHECK(f.db->cursor(f.bob.uid, "phone", &known) == 2);
  CHECK(known);
  // An ack never moves a cursor back, nor beyond the head.
  f.apply({ack_op{f.bob.uid, "phone", 1, t0}});
  CHECK(f.db->cursor(f.bob.uid, "phone") == 2);
  f.apply({ack_op{f.bob.uid, "phone", 99, t0}});
  CHECK(f.db->cursor(f.bob.uid, "phone") == 2);
}

TEST_CASE("read: READ once for the peer's messages that asked for it") {
  fixture f;
  f.send(1, "bob", "a");
  f.send(2, "bob", "b", t0, codec::message_flags::delivery_receipt);
  f.apply({read_op{f.bob.uid, "alice", 2, t0}});
  auto r = f.receipts();
  REQUIRE(r.size() == 1);
  CHECK(r[0].value == message_status::read);
  CHECK(r[0].mid == 1);
  f.apply({read_op{f.bob.uid, "alice", 2, t0}});
  CHECK(f.receipts().size() == 1);
}

TEST_CASE("a user deleted and added again is a new user to later messages") {
  // The store remembers who is who between batches: a deletion must make it
  // forget.
  fixture f;
  f.send(1, "bob", "to the first bob");
  f.apply({ack_op{f.bob.uid, "b1", 1, t0}}); // bob's identity, for receipts
  auto old_uid = f.bob.uid;
  REQUIRE(f.db->user_delete("demo", "bob").ok());
  auto bob2 = *f.db->user_add("demo", "bob", "Bob", 0, t0);
  REQUIRE(bob2.uid != old_uid);
  auto out = f.send(2, "bob", "to the second bob");
  CHECK(out.status == message_status::sent);
  CHECK(out.receiver_uid == bob2.uid);
  CHECK(f.db->head(bob2.uid) == 1);
  CHECK(f.db->head(old_uid) == 0);
  // And the new bob's DELIVERED comes from "bob", through his new uid.
  f.apply({ack_op{bob2.uid, "b1", 1, t0}});
  auto r = f.receipts();
  REQUIRE(r.size() == 2);
  CHECK(r[1].mid == 2);
  CHECK(r[1].peer == "bob");
}

TEST_CASE("read: only the conversation read gets READ") {
  fixture f;
  auto carol = *f.db->user_add("demo", "carol", "Carol", 0, t0);
  auto op = fixture::message(carol.uid, "carol", "c1", 7, "bob",
                             codec::message_flags::read_receipt, "from carol");
  REQUIRE(f.apply({op})[0].append.status == message_status::sent);
  f.send(1, "bob", "from alice");
  auto reads_of = [&](uint64_t uid) {
    size_t n = 0;
    for (auto& r : f.log_of(uid))
      if (r.type == codec::frame_type::status_update &&
          f.decode<codec::status_update>(r).value == message_status::read)
        ++n;
    return n;
  };
  // Bob reads his conversation with alice, up to his head: carol's message
  // (seq 1, before alice's) is in range but of another conversation.
  f.apply({read_op{f.bob.uid, "alice", f.db->head(f.bob.uid), t0}});
  CHECK(reads_of(f.alice.uid) == 1);
  CHECK(reads_of(carol.uid) == 0);
  f.apply({read_op{f.bob.uid, "carol", f.db->head(f.bob.uid), t0}});
  CHECK(reads_of(carol.uid) == 1);
  CHECK(reads_of(f.alice.uid) == 1);
}

TEST_CASE("expiry: EXPIRED once, never for a message a device acked") {
  fixture f;
  f.send(1, "bob", "short", t0, 0, 60);
  f.send(2, "bob", "acked in time", t0, 0, 60);
  f.apply({ack_op{f.bob.uid, "phone", 0, t0}}); // phone known, acked nothing
  SUBCASE("sweep after the expiry") {
    f.apply({sweep_op{t0 + 61'000, 1000}});
    auto r = f.receipts();
    REQUIRE(r.size() == 2);
    CHECK(r[0].value == message_status::expired);
    CHECK(r[1].value == message_status::expired);
    f.apply({sweep_op{t0 + 62'000, 1000}});
    f.apply({expire_op{f.bob.uid, {1, 2}, t0 + 62'000}});
    CHECK(f.receipts().size() == 2);
    // Acknowledging expired records later sends no DELIVERED.
    f.apply({ack_op{f.bob.uid, "phone", 2, t0 + 63'000}});
    CHECK(f.receipts().size() == 2);
  }
  SUBCASE("a device acked before the expiry") {
    f.apply({ack_op{f.bob.uid, "phone", 2, t0 + 1'000}});
    f.apply({sweep_op{t0 + 61'000, 1000}});
    f.apply({expire_op{f.bob.uid, {1, 2}, t0 + 61'000}});
    CHECK(f.receipts().empty()); // no flags: no DELIVERED; never EXPIRED
  }
  SUBCASE("not before its time") {
    f.apply({sweep_op{t0 + 59'000, 1000}});
    f.apply({expire_op{f.bob.uid, {1, 2}, t0 + 59'000}});
    CHECK(f.receipts().empty());
  }
}

TEST_CASE("trim: old records go once every device acked them") {
  fixture f;
  for (uint64_t i = 1; i <= 5; ++i)
    f.send(i, "bob", "m", t0, 0);
  f.apply(
    {ack_op{f.bob.uid, "phone", 5, t0}, ack_op{f.bob.uid, "laptop", 3, t0}});
  uint64_t later = t0 + uint64_t{f.opts.retention_s} * 1000 + 1000;
  // Before the retention passed nothing goes.
  f.apply({trim_op{t0 + 1000, 10000}});
  CHECK(f.db->log_size(f.bob.uid) == 5);
  // After it: what every device acked (up to 3), and what expired (all of
  // them: the expiry is capped at the retention).
  f.apply({trim_op{later, 10000}});
  CHECK(f.db->log_size(f.bob.uid) == 0);
  CHECK(f.db->head(f.bob.uid) == 5); // sequences are never reused
  CHECK(f.send(9, "bob", "new", later).receiver_seq == 6);
}

TEST_CASE("trim keeps receipts nobody acknowledged") {
  fixture f;
  f.send(1, "bob", "m", t0);
  f.apply({ack_op{f.bob.uid, "phone", 1, t0}}); // DELIVERED into alice's log
  uint64_t later = t0 + uint64_t{f.opts.retention_s} * 1000 + 1000;
  f.apply({trim_op{later, 10000}});
  // alice's outgoing copy expired (trimmed); the receipt never expires and
  // no device of alice acked it: kept.
  auto left = f.log_of(f.alice.uid);
  REQUIRE(left.size() == 1);
  CHECK(left[0].type == codec::frame_type::status_update);
}

TEST_CASE("a newer on-disk format is refused") {
  test::temp_dir dir;
  server_store_options opts;
  {
    auto s = server_store::open(dir.path(), opts);
    REQUIRE(s.ok());
    auto& e = (*s)->environment();
    auto meta = e.open_dbi("meta");
    REQUIRE(meta.ok());
    REQUIRE(e.write([&](txn& t) {
               return set_format(t, *meta, "format", server_format_version + 1);
             })
              .ok());
  }
  auto again = server_store::open(dir.path(), opts);
  REQUIRE(!again.ok());
  CHECK(again.error().code() == status_code::version_mismatch);
}

TEST_CASE("the map grows under a batch of appends") {
  test::temp_dir dir;
  server_store_options opts;
  opts.env.sync = false;
  opts.env.map_size = 256 * 1024;
  opts.env.max_map_size = 64 << 20;
  auto s = server_store::open(dir.path(), opts);
  REQUIRE(s.ok());
  auto& db = **s;
  REQUIRE(db.app_add("demo", "").ok());
  auto a = db.user_add("demo", "a", "", 0, t0);
  REQUIRE(db.user_add("demo", "b", "", 0, t0).ok());
  std::vector<write_op> ops;
  for (uint64_t i = 1; i <= 500; ++i) {
    append_op op;
    op.sender_uid = a->uid;
    op.app_id = "demo";
    op.sender = "a";
    op.device = "d";
    op.msg.mid = i;
    op.msg.peer = "b";
    op.msg.payload.assign(1000, 'x');
    op.now_ms = t0;
    ops.emplace_back(std::move(op));
  }
  std::vector<write_outcome> out;
  std::vector<uint64_t> touched;
  REQUIRE(db.apply(ops, out, touched).ok());
  for (auto& o : out)
    CHECK(o.append.status == message_status::sent);
  CHECK(db.head(db.uid_of("demo", "b")) == 500);
  CHECK(db.environment().map_size() > 256 * 1024);
}

TEST_CASE("trim forgets a device silent for longer than the retention") {
  fixture f;
  uint64_t day = 24ull * 3600 * 1000;
  uint64_t retention = uint64_t{f.opts.retention_s} * 1000;
  // Receipts never expire: only acks let them go.
  f.send(1, "bob", "m", t0);
  f.apply({ack_op{f.bob.uid, "b1", 1, t0}}); // DELIVERED into alice's log
  f.apply({ack_op{f.alice.uid, "old-phone", 0, t0}});
  f.apply({ack_op{f.alice.uid, "laptop", 2, t0 + retention + 2 * day}});
  uint64_t later = t0 + retention + 3 * day;
  // The laptop acked everything; the old phone (cursor 0) stopped acking
  // more than a retention ago: it no longer holds the log.
  f.apply({trim_op{later, 10000}});
  CHECK(f.db->log_size(f.alice.uid) == 0);
  bool known = true;
  f.db->cursor(f.alice.uid, "old-phone", &known);
  CHECK(!known); // it would come back as a new device
  CHECK(f.db->cursor(f.alice.uid, "laptop", &known) == 2);
  CHECK(known);
}

TEST_CASE("one failing op fails alone, not its whole batch") {
  fixture f;
  f.send(1, "bob", "m", t0);
  // Corrupt bob's only log record: acking it must fail (receipts read it).
  REQUIRE(f.db->flush_journal().ok()); // so that it is in `log`
  auto& e = f.db->environment();
  auto log = e.open_dbi("log");
  REQUIRE(log.ok());
  REQUIRE(e.write([&](txn& t) {
             key_builder k;
             k.u64(f.bob.uid).u64(1);
             return t.put(*log, k.view(), "garbage");
           })
            .ok());
  append_op good;
  good.sender_uid = f.alice.uid;
  good.app_id = "demo";
  good.sender = "alice";
  good.device = "a1";
  good.msg.mid = 2;
  good.msg.peer = "carol-less"; // unknown: an answer, not an error
  good.now_ms = t0;
  append_op to_alice = good;
  to_alice.sender_uid = f.bob.uid;
  to_alice.sender = "bob";
  to_alice.device = "b1";
  to_alice.msg.peer = "alice";
  std::vector<write_op> ops{ack_op{f.bob.uid, "b1", 1, t0}, to_alice, good};
  std::vector<write_outcome> out;
  std::vector<uint64_t> touched;
  auto st = f.db->apply(ops, out, touched);
  CHECK(st.code() == status_code::corruption);
  REQUIRE(out.size() == 3);
  CHECK(out[0].st.code() == status_code::corruption);
  CHECK(out[1].st.ok());
  CHECK(out[1].append.status == message_status::sent);
  CHECK(out[2].st.ok());
  CHECK(out[2].append.status == message_status::invalid_dest);
  CHECK(std::find(touched.begin(), touched.end(), f.alice.uid) !=
        touched.end());
}

TEST_CASE("a full map refuses new messages, keeps serving, and recovers") {
  fixture f{100000, [](server_store_options& o) {
              o.env.map_size = 1 << 20;
              o.env.max_map_size = 2 << 20; // 512 pages of 4 KiB
            }};
  std::string payload(2000, 'x');
  uint64_t mid = 0;
  append_outcome out;
  for (;;) {
    out = f.send(++mid, "bob", payload, t0, 0);
    if (out.status != message_status::sent)
      break;
    REQUIRE(mid < 10000); // 2 MiB hold far fewer
  }
  uint64_t stored = mid - 1;
  CHECK(stored > 50);
  CHECK(out.status == message_status::fail);
  CHECK(out.text.find("storage is full") != std::string::npos);
  CHECK(out.text.find("max-map-size") != std::string::npos);
  // Refused again, not half-written: bob's log holds what was SENT.
  CHECK(f.send(++mid, "bob", payload, t0, 0).status == message_status::fail);
  CHECK(f.db->log_size(f.bob.uid) == stored);
  // Reads, acks and trims still work in the reserve.
  auto log = f.log_of(f.bob.uid);
  CHECK(log.size() == std::min<uint64_t>(stored, 1000));
  f.apply({ack_op{f.bob.uid, "phone", stored, t0}});
  f.apply({ack_op{f.alice.uid, "a1", f.db->head(f.alice.uid), t0}});
  uint64_t later = t0 + uint64_t{f.opts.retention_s} * 1000 + 1000;
  f.apply({trim_op{later, 100000}});
  CHECK(f.db->log_size(f.bob.uid) == 0);
  // Space is back: messages are accepted again.
  for (int i = 0; i < 20; ++i)
    CHECK(f.send(++mid, "bob", payload, later, 0).status ==
          message_status::sent);
}

// -- groups (issue 7)
// -----------------------------------------------------------

namespace {

namespace mf = codec::member_flags;

struct group_fixture : fixture {
  issued_token carol, dave;

  group_fixture() {
    carol = *db->user_add("demo", "carol", "", 0, t0);
    dave = *db->user_add("demo", "dave", "", 0, t0);
  }

  group_outcome change(group_op op) {
    op.app_id = "demo";
    if (op.now_ms == 0)
      op.now_ms = t0;
    auto out = apply({op});
    REQUIRE(out[0].st.ok());
    return out[0].group;
  }

  /// alice creates a group with bob and carol (send | recv).
  uint32_t make_group(uint32_t flags = 0) {
    group_op op;
    op.kind = codec::frame_type::group_create;
    op.actor_uid = alice.uid;
    op.actor = "alice";
    op.name = "team";
    op.flags = flags;
    op.members = {{"bob", 0}, {"carol", mf::send | mf::recv}};
    auto g = change(op);
    REQUIRE(g.refusal.ok());
    return g.info.group_id;
  }

  group_op by(const issued_token& who, const std::string& address,
              codec::frame_type kind, uint32_t gid) {
    group_op op;
    op.kind = kind;
    op.actor_uid = who.uid;
    op.actor = address;
    op.group_id = gid;
    return op;
  }

  append_outcome group_send(const issued_token& who, const std::string& from,
                            uint32_t gid, uint64_t mid,
                            const std::string& payload) {
    append_op op;
    op.sender_uid = who.uid;
    op.app_id = "demo";
    op.sender = from;
    op.device = from + "-phone";
    op.msg.mid = mid;
    op.msg.group_id = gid;
    op.msg.flags = codec::message_flags::delivery_receipt;
    op.msg.payload = payload;
    op.now_ms = t0;
    auto out = apply({op});
    REQUIRE(out[0].st.ok());
    return out[0].append;
  }

  /// The payloads of the group messages in `uid`'s log, in order.
  std::vector<std::string> group_messages(uint64_t uid, uint32_t gid) {
    std::vector<std::string> out;
    for (auto& r : log_of(uid))
      if (r.type == codec::frame_type::message) {
        auto m = decode<codec::message>(r);
        if (m.group_id == gid && !m.outgoing) {
          CHECK(m.peer.empty()); // the group id names the conversation
          CHECK(!m.sender.empty());
          out.push_back(m.payload);
        }
      }
    return out;
  }

  std::vector<codec::group_event> events(uint64_t uid) {
    std::vector<codec::group_event> out;
    for (auto& r : log_of(uid))
      if (r.type == codec::frame_type::group_event)
        out.push_back(decode<codec::group_event>(r));
    return out;
  }
};

} // namespace

TEST_CASE("groups: create, list, get; the creator owns it as an admin") {
  group_fixture f;
  auto gid = f.make_group();
  auto info = f.db->group_get(f.bob.uid, gid);
  REQUIRE(info.ok());
  CHECK(info->name == "team");
  CHECK(info->owner == "alice");
  REQUIRE(info->members.size() == 3);
  for (auto& m : info->members) {
    if (m.address == "alice")
      CHECK(m.flags == (mf::send | mf::recv | mf::admin));
    else
      CHECK(m.flags == (mf::send | mf::recv));
  }
  auto mine = f.db->groups_of(f.carol.uid);
  REQUIRE(mine.ok());
  REQUIRE(mine->size() == 1);
  CHECK((*mine)[0].group_id == gid);
  CHECK((*mine)[0].my_flags == (mf::send | mf::recv));
  // A non-member learns nothing, not even that the group exists.
  auto none = f.db->group_get(f.dave.uid, gid);
  CHECK(none.error().code() == status_code::not_found);
  CHECK(f.db->groups_of(f.dave.uid)->empty());
  // Every member got the created event.
  for (auto uid : {f.alice.uid, f.bob.uid, f.carol.uid}) {
    auto ev = f.events(uid);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == codec::group_event_kind::created);
    CHECK(ev[0].actor == "alice");
    CHECK(ev[0].members.size() == 3);
  }
  // An unknown member address is refused, with what to do.
  group_op bad;
  bad.kind = codec::frame_type::group_create;
  bad.actor_uid = f.alice.uid;
  bad.actor = "alice";
  bad.members = {{"nobody", 0}};
  auto r = f.change(bad);
  CHECK(r.refusal.code() == status_code::invalid_argument);
  CHECK(r.refusal.message().find("nobody") != std::string::npos);
}

TEST_CASE("groups: only admins change members, only the owner deletes") {
  group_fixture f;
  auto gid = f.make_group();
  auto add = f.by(f.bob, "bob", codec::frame_type::group_members, gid);
  add.members = {{"dave", 0}};
  auto refused = f.change(add);
  CHECK(refused.refusal.code() == status_code::permission_denied);
  CHECK(refused.refusal.message().find("admin") != std::string::npos);
  CHECK(f.db->group_get(f.dave.uid, gid).error().code() ==
        status_code::not_found);
  // alice (admin) adds dave; everyone, dave included, hears of it.
  add = f.by(f.alice, "alice", codec::frame_type::group_members, gid);
  add.members = {{"dave", mf::recv}};
  auto added = f.change(add);
  REQUIRE(added.refusal.ok());
  CHECK(added.info.members.size() == 4);
  CHECK(f.events(f.dave.uid).back().kind ==
        codec::group_event_kind::members_added);
  CHECK(f.events(f.bob.uid).back().kind ==
        codec::group_event_kind::members_added);
  // Removing: the removed member hears it too; the owner cannot be removed.
  auto rm = f.by(f.alice, "alice", codec::frame_type::group_members, gid);
  rm.op = codec::member_op::remove;
  rm.members = {{"carol", 0}};
  REQUIRE(f.change(rm).refusal.ok());
  CHECK(f.events(f.carol.uid).back().kind ==
        codec::group_event_kind::members_removed);
  CHECK(f.db->group_get(f.carol.uid, gid).error().code() ==
        status_code::not_found);
  rm.members = {{"alice", 0}};
  CHECK(f.change(rm).refusal.code() == status_code::permission_denied);
  // bob leaves; the owner may not leave; a non-owner may not delete.
  REQUIRE(f.change(f.by(f.bob, "bob", codec::frame_type::group_leave, gid))
            .refusal.ok());
  CHECK(f.events(f.bob.uid).back().kind == codec::group_event_kind::left);
  CHECK(f.change(f.by(f.alice, "alice", codec::frame_type::group_leave, gid))
          .refusal.code() == status_code::permission_denied);
  CHECK(f.change(f.by(f.dave, "dave", codec::frame_type::group_delete, gid))
          .refusal.code() == status_code::permission_denied);
  // Settings: admins only.
  auto set = f.by(f.dave, "dave", codec::frame_type::group_set, gid);
  set.name = "renamed";
  CHECK(f.change(set).refusal.code() == status_code::permission_denied);
  set = f.by(f.alice, "alice", codec::frame_type::group_set, gid);
  set.name = "renamed";
  CHECK(f.change(set).info.name == "renamed");
  CHECK(f.events(f.dave.uid).back().kind ==
        codec::group_event_kind::settings_changed);
  CHECK(f.events(f.dave.uid).back().name == "renamed");
  // The owner deletes it: members hear it and it is gone.
  REQUIRE(f.change(f.by(f.alice, "alice", codec::frame_type::group_delete, gid))
            .refusal.ok());
  CHECK(f.events(f.dave.uid).back().kind == codec::group_event_kind::deleted);
  CHECK(f.db->group_get(f.alice.uid, gid).error().code() ==
        status_code::not_found);
  CHECK(f.db->groups_of(f.dave.uid)->empty());
}

TEST_CASE("groups: a message is fanned out once to every member, in one "
          "order") {
  group_fixture f;
  auto gid = f.make_group();
  // Two senders interleaved: every member sees the same order.
  CHECK(f.group_send(f.alice, "alice", gid, 1, "a1").status ==
        message_status::sent);
  CHECK(f.group_send(f.bob, "bob", gid, 1, "b1").status ==
        message_status::sent);
  CHECK(f.group_send(f.alice, "alice", gid, 2, "a2").status ==
        message_status::sent);
  std::vector<std::string> all{"a1", "b1", "a2"};
  CHECK(f.group_messages(f.carol.uid, gid) == all);
  // Senders do not receive their own (no recv_loopback)...
  CHECK(f.group_messages(f.alice.uid, gid) == std::vector<std::string>{"b1"});
  CHECK(f.group_messages(f.bob.uid, gid) ==
        (std::vector<std::string>{"a1", "a2"}));
  // ...but their other devices get the outgoing copy.
  size_t outgoing = 0;
  for (auto& r : f.log_of(f.alice.uid))
    if (r.type == codec::frame_type::message &&
        f.decode<codec::message>(r).outgoing)
      ++outgoing;
  CHECK(outgoing == 2);
  // A resend is answered, not fanned out again.
  auto again = f.group_send(f.alice, "alice", gid, 1, "a1");
  CHECK(again.duplicate);
  CHECK(f.group_messages(f.carol.uid, gid) == all);
}

TEST_CASE("groups: NOTMEMBER for outsiders and members without send") {
  group_fixture f;
  auto gid = f.make_group(codec::group_flags::send_by_selected);
  auto out = f.group_send(f.dave, "dave", gid, 1, "let me in");
  CHECK(out.status == message_status::not_member);
  CHECK(out.text.find("not a member") != std::string::npos);
  // dave joins with recv only: he receives, but may not send.
  auto add = f.by(f.alice, "alice", codec::frame_type::group_members, gid);
  add.members = {{"dave", mf::recv}};
  REQUIRE(f.change(add).refusal.ok());
  out = f.group_send(f.dave, "dave", gid, 2, "hello?");
  CHECK(out.status == message_status::not_member);
  CHECK(out.text.find("send permission") != std::string::npos);
  CHECK(f.group_send(f.bob, "bob", gid, 1, "hi").status ==
        message_status::sent);
  CHECK(f.group_messages(f.dave.uid, gid) == std::vector<std::string>{"hi"});
  CHECK(f.group_send(f.bob, "bob", 999, 2, "x").status ==
        message_status::invalid_dest);
}

TEST_CASE("groups: DELIVERED per member reaches the sender") {
  group_fixture f;
  auto gid = f.make_group();
  REQUIRE(f.group_send(f.alice, "alice", gid, 7, "hi").status ==
          message_status::sent);
  f.apply({ack_op{f.bob.uid, "phone", f.db->head(f.bob.uid), t0}});
  f.apply({ack_op{f.carol.uid, "phone", f.db->head(f.carol.uid), t0}});
  std::vector<std::string> who;
  for (auto& su : f.receipts()) {
    CHECK(su.mid == 7);
    CHECK(su.group_id == gid);
    CHECK(su.value == message_status::delivered);
    who.push_back(su.member);
  }
  CHECK(who == (std::vector<std::string>{"bob", "carol"}));
}

// -- edits and retractions (issue 7)
// -----------------------------------------------

namespace {

change_op change_by_alice(codec::update_kind kind, uint64_t mid,
                          const std::string& payload = {},
                          uint64_t now = t0 + 1000,
                          const std::string& device = "a1") {
  change_op op;
  op.kind = kind;
  op.uid = 0; // set by the caller
  op.sender = "alice";
  op.device = device;
  op.mid = mid;
  op.payload = payload;
  op.now_ms = now;
  return op;
}

} // namespace

TEST_CASE("edit: both stored copies change, and both logs get an update") {
  fixture f;
  f.send(7, "bob", "helo");
  auto op = change_by_alice(codec::update_kind::edit, 7, "hello");
  op.uid = f.alice.uid;
  auto out = f.apply({op});
  REQUIRE(out[0].st.ok());
  REQUIRE_MESSAGE(out[0].refusal.ok(), out[0].refusal.to_string());
  for (auto uid : {f.bob.uid, f.alice.uid}) {
    auto log = f.log_of(uid);
    REQUIRE(log.size() == 2);
    auto m = f.decode<codec::message>(log[0]);
    CHECK(m.payload == "hello");
    CHECK((m.flags & codec::message_flags::edited) != 0);
    CHECK(m.seq == 1); // rewritten in place
    REQUIRE(log[1].type == codec::frame_type::update);
    auto u = f.decode<codec::update>(log[1]);
    CHECK(u.seq == 2);
    CHECK(u.kind == codec::update_kind::edit);
    CHECK(u.sender == "alice");
    CHECK(u.mid == 7);
    CHECK(u.payload == "hello");
    CHECK(u.peer == (uid == f.bob.uid ? "alice" : "bob"));
  }
  // The sender's update names the device that made it.
  CHECK(f.log_of(f.alice.uid)[1].origin_device == "a1");
}

TEST_CASE("journal: a batch reads and rewrites the records it appended") {
  // The batch's journal records are written at its end (sorted); what in
  // the same batch reads them (an ack up to the new head, an edit of the
  // new message) must see them first.
  fixture f;
  auto op = fixture::message(f.alice.uid, "alice", "a1", 7, "bob",
                             codec::message_flags::delivery_receipt, "helo");
  auto edit = change_by_alice(codec::update_kind::edit, 7, "hello");
  edit.uid = f.alice.uid;
  // (Not f.apply: the batch's copies of the records it appended predate
  // the edit; the server runs edits in batches of their own.)
  std::vector<write_op> ops{op, ack_op{f.bob.uid, "b1", 1, t0}, edit,
                            ack_op{f.bob.uid, "b1", 2, t0}};
  std::vector<write_outcome> out;
  std::vector<uint64_t> touched;
  REQUIRE(f.db->apply(ops, out, touched).ok());
  REQUIRE(out[0].append.status == message_status::sent);
  REQUIRE_MESSAGE(out[2].refusal.ok(), out[2].refusal.to_string());
  auto r = f.receipts();
  REQUIRE(r.size() == 1);
  CHECK(r[0].value == message_status::delivered);
  CHECK(r[0].mid == 7);
  auto bob = f.log_of(f.bob.uid);
  REQUIRE(bob.size() == 2);
  auto m = f.decode<codec::message>(bob[0]);
  CHECK(m.payload == "hello");
  CHECK((m.flags & codec::message_flags::edited) != 0);
  CHECK(bob[1].type == codec::frame_type::update);
  // alice: her copy (edited), the DELIVERED and her update, in seq order.
  auto alice = f.log_of(f.alice.uid);
  REQUIRE(alice.size() == 3);
  CHECK(f.decode<codec::message>(alice[0]).payload == "hello");
  CHECK(alice[1].type == codec::frame_type::status_update);
  CHECK(alice[2].type == codec::frame_type::update);
  CHECK(f.db->cursor(f.bob.uid, "b1") == 2);
}

TEST_CASE("journal: an ack's receipts end at its seq, with the batch's own "
          "messages to the same user before it") {
  // Each batch is a gen, so every message to bob begins a segment of his,
  // and each ack here ends exactly where the next segment (the batch's
  // own, not yet written out) begins: the scan stops at the ack's seq and
  // skips the later segments, yet owes the receipt of the one at its end.
  fixture f;
  auto msg = [&](uint64_t mid) {
    return fixture::message(f.alice.uid, "alice", "a1", mid, "bob",
                            codec::message_flags::delivery_receipt,
                            "m" + std::to_string(mid));
  };
  auto mids = [&] {
    std::vector<uint64_t> out;
    for (auto& r : f.receipts())
      if (r.value == message_status::delivered)
        out.push_back(r.mid);
    return out;
  };
  f.apply({msg(1)});
  // bob's seq 2 is appended in this batch, before his ack of seq 1.
  auto out = f.apply({msg(2), ack_op{f.bob.uid, "b1", 1, t0}});
  REQUIRE(out[0].append.receiver_seq == 2);
  CHECK(mids() == std::vector<uint64_t>{1});
  // Up to 2, the first seq of the previous batch's segment, with seq 3 and
  // 4 appended around the ack: the receipt of 2 only.
  f.apply({msg(3), ack_op{f.bob.uid, "b1", 2, t0}, msg(4)});
  CHECK(mids() == std::vector<uint64_t>{1, 2});
  // Everything, with nothing appended: the rest, in order.
  f.apply({ack_op{f.bob.uid, "b1", 4, t0}});
  CHECK(mids() == std::vector<uint64_t>{1, 2, 3, 4});
  // And the batches' records read back whole, in seq order.
  auto bob = f.log_of(f.bob.uid);
  REQUIRE(bob.size() == 4);
  for (uint64_t i = 0; i < 4; ++i)
    CHECK(f.decode<codec::message>(bob[i]).payload ==
          "m" + std::to_string(i + 1));
}

TEST_CASE("retract: within the window only, once, from the sending device") {
  fixture f;
  f.send(7, "bob", "oops");
  f.send(8, "bob", "old", t0 - 3601 * 1000);
  // Another device of alice did not send mid 7.
  auto other = change_by_alice(codec::update_kind::retract, 7, {}, t0, "a2");
  other.uid = f.alice.uid;
  auto out = f.apply({other});
  CHECK(out[0].refusal.code() == status_code::not_found);
  CHECK(out[0].refusal.message().find("device") != std::string::npos);
  // Outside the default window of 3600 s.
  auto late = change_by_alice(codec::update_kind::retract, 8, {}, t0);
  late.uid = f.alice.uid;
  out = f.apply({late});
  CHECK(out[0].refusal.code() == status_code::failed_precondition);
  CHECK(out[0].refusal.message().find("3600 s") != std::string::npos);
  CHECK(f.decode<codec::message>(f.log_of(f.bob.uid)[1]).payload == "old");
  // Inside: gone for everyone.
  auto now = change_by_alice(codec::update_kind::retract, 7, {}, t0 + 5000);
  now.uid = f.alice.uid;
  out = f.apply({now});
  REQUIRE_MESSAGE(out[0].refusal.ok(), out[0].refusal.to_string());
  auto m = f.decode<codec::message>(f.log_of(f.bob.uid)[0]);
  CHECK(m.payload.empty());
  CHECK((m.flags & codec::message_flags::retracted) != 0);
  auto last = f.log_of(f.bob.uid).back();
  REQUIRE(last.type == codec::frame_type::update);
  CHECK(f.decode<codec::update>(last).kind == codec::update_kind::retract);
  // Retracted: no more changes.
  auto again = change_by_alice(codec::update_kind::edit, 7, "x", t0 + 6000);
  again.uid = f.alice.uid;
  out = f.apply({again});
  CHECK(out[0].refusal.code() == status_code::failed_precondition);
  CHECK(out[0].refusal.message().find("retracted already") !=
        std::string::npos);
  // A sender cannot set the server's flags itself.
  f.send(9, "bob", "sneaky", t0,
         codec::message_flags::retracted | codec::message_flags::edited);
  CHECK((f.decode<codec::message>(f.log_of(f.bob.uid).back()).flags &
         codec::message_flags::server_owned) == 0);
}

TEST_CASE("retract: the window is the server's option") {
  fixture f{100000, [](server_store_options& o) { o.retract_window_s = 10; }};
  f.send(7, "bob", "x");
  auto late = change_by_alice(codec::update_kind::retract, 7, {}, t0 + 11000);
  late.uid = f.alice.uid;
  auto out = f.apply({late});
  CHECK(out[0].refusal.code() == status_code::failed_precondition);
  CHECK(out[0].refusal.message().find("10 s") != std::string::npos);
}

TEST_CASE("edit of a group message: every receiving member gets the update") {
  group_fixture f;
  auto gid = f.make_group();
  f.group_send(f.alice, "alice", gid, 1, "hi al");
  auto op = change_by_alice(codec::update_kind::edit, 1, "hi all", t0 + 1000,
                            "alice-phone");
  op.uid = f.alice.uid;
  auto out = f.apply({op});
  REQUIRE_MESSAGE(out[0].refusal.ok(), out[0].refusal.to_string());
  for (auto uid : {f.bob.uid, f.carol.uid}) {
    auto last = f.log_of(uid).back();
    REQUIRE(last.type == codec::frame_type::update);
    auto u = f.decode<codec::update>(last);
    CHECK(u.group_id == gid);
    CHECK(u.peer.empty());
    CHECK(u.payload == "hi all");
  }
  // dave is no member: nothing.
  CHECK(f.log_of(f.dave.uid).empty());
  // The sender's own copy changed in place.
  for (auto& r : f.log_of(f.alice.uid))
    if (r.type == codec::frame_type::message)
      CHECK(f.decode<codec::message>(r).payload == "hi all");
}

// -- history sync (issue 7)
// ----------------------------------------------------------

TEST_CASE("history: one conversation, newest first, page by page") {
  group_fixture f;
  // alice's log: to bob, to carol, to bob, ... interleaved.
  for (uint64_t i = 1; i <= 10; ++i)
    f.send(i, i % 2 == 0 ? "carol" : "bob", "m" + std::to_string(i));
  codec::sync_page page;
  REQUIRE(
    f.db->read_conversation(f.alice.uid, "bob", 0, 0, 3, 1000, 1 << 20, page)
      .ok());
  std::vector<std::string> got;
  for (auto& m : page.messages) {
    CHECK(m.outgoing);
    CHECK(m.peer == "bob");
    got.push_back(m.payload);
  }
  CHECK(got == std::vector<std::string>{"m9", "m7", "m5"});
  CHECK(!page.complete);
  REQUIRE(f.db
            ->read_conversation(f.alice.uid, "bob", 0, page.resume_before, 3,
                                1000, 1 << 20, page)
            .ok());
  got.clear();
  for (auto& m : page.messages)
    got.push_back(m.payload);
  CHECK(got == std::vector<std::string>{"m3", "m1"});
  CHECK(page.complete);
  // bob's side: the same conversation, incoming.
  REQUIRE(
    f.db->read_conversation(f.bob.uid, "alice", 0, 0, 100, 1000, 1 << 20, page)
      .ok());
  REQUIRE(page.messages.size() == 5);
  CHECK(!page.messages[0].outgoing);
  CHECK(page.messages[0].sender == "alice");
  CHECK(page.complete);
  // A small scan budget: pages may come back short, even empty, and the
  // resume position still moves on to the end.
  size_t total = 0, pages = 0;
  uint64_t before = 0;
  for (;;) {
    REQUIRE(f.db
              ->read_conversation(f.alice.uid, "carol", 0, before, 100, 2,
                                  1 << 20, page)
              .ok());
    total += page.messages.size();
    ++pages;
    if (page.complete)
      break;
    REQUIRE(page.resume_before != 0);
    before = page.resume_before;
  }
  CHECK(total == 5);
  CHECK(pages > 3);
}

TEST_CASE("history: a group's messages with their edits applied") {
  group_fixture f;
  auto gid = f.make_group();
  f.group_send(f.alice, "alice", gid, 1, "first");
  f.group_send(f.bob, "bob", gid, 1, "secnd");
  auto op = change_op{};
  op.kind = codec::update_kind::edit;
  op.uid = f.bob.uid;
  op.sender = "bob";
  op.device = "bob-phone";
  op.mid = 1;
  op.payload = "second";
  op.now_ms = t0 + 1;
  REQUIRE(f.apply({op})[0].refusal.ok());
  codec::sync_page page;
  REQUIRE(
    f.db->read_conversation(f.carol.uid, {}, gid, 0, 100, 1000, 1 << 20, page)
      .ok());
  REQUIRE(page.messages.size() == 2);
  CHECK(page.messages[0].payload == "second");
  CHECK((page.messages[0].flags & codec::message_flags::edited) != 0);
  CHECK(page.messages[1].payload == "first");
  // Another group, or a 1:1 conversation, is not this one.
  REQUIRE(
    f.db
      ->read_conversation(f.carol.uid, "alice", 0, 0, 100, 1000, 1 << 20, page)
      .ok());
  CHECK(page.messages.empty());
  CHECK(page.complete);
}

TEST_CASE("groups: READ per reading member; a 1:1 read leaves groups alone") {
  group_fixture f;
  auto gid = f.make_group();
  append_op op;
  op.sender_uid = f.alice.uid;
  op.app_id = "demo";
  op.sender = "alice";
  op.device = "alice-phone";
  op.msg.mid = 7;
  op.msg.group_id = gid;
  op.msg.flags = codec::message_flags::read_receipt;
  op.msg.payload = "read me";
  op.now_ms = t0;
  auto out = f.apply({op});
  CHECK(out[0].append.receivers == 2); // bob and carol
  // bob reads his 1:1 conversation with alice: not the group's.
  f.apply({read_op{f.bob.uid, "alice", f.db->head(f.bob.uid), t0, 0}});
  CHECK(f.receipts().empty());
  // bob reads the group: alice learns that bob read it.
  f.apply({read_op{f.bob.uid, {}, f.db->head(f.bob.uid), t0, gid}});
  auto rs = f.receipts();
  REQUIRE(rs.size() == 1);
  CHECK(rs[0].value == message_status::read);
  CHECK(rs[0].group_id == gid);
  CHECK(rs[0].member == "bob");
  CHECK(rs[0].mid == 7);
  // Once only.
  f.apply({read_op{f.bob.uid, {}, f.db->head(f.bob.uid), t0, gid}});
  CHECK(f.receipts().size() == 1);
}

TEST_CASE("format 1 is migrated: stored status_update records gain "
          "'receivers'") {
  fixture f;
  f.send(1, "bob", "hi");
  f.apply({ack_op{f.bob.uid, "b1", f.db->head(f.bob.uid), t0}});
  REQUIRE(f.receipts().size() == 1);
  REQUIRE(f.db->flush_journal().ok()); // format 1 had no journal
  f.db.reset();
  auto dir = f.dir.path();
  // Make it a format-1 directory: the status_update bodies end before
  // `receivers`, and meta says 1.
  size_t rewritten = 0, dedups = 0;
  {
    auto e = env::open(dir, {});
    REQUIRE(e.ok());
    dbi meta, log;
    auto st = (*e)->write([&](txn& t) -> status {
      if (auto s = open_tables(t, {{&meta, "meta"}, {&log, "log"}}); !s)
        return s;
      if (auto s = set_format(t, meta, "format", 1); !s)
        return s;
      auto c = t.open_cursor(log);
      if (!c)
        return c.error();
      std::vector<std::pair<std::string, std::string>> edits;
      for (auto s = c->first(); s && c->valid(); s = c->next()) {
        std::string v{c->value()};
        if (static_cast<codec::frame_type>(v[25]) !=
            codec::frame_type::status_update)
          continue;
        size_t at = 27 + static_cast<uint8_t>(v[26]);
        v.resize(v.size() - 4);
        auto len = static_cast<uint32_t>(v.size() - at - codec::header_size);
        v[at + 1] = static_cast<char>(len);
        v[at + 2] = static_cast<char>(len >> 8);
        v[at + 3] = static_cast<char>(len >> 16);
        edits.emplace_back(std::string{c->key()}, v);
      }
      for (auto& [k, v] : edits)
        if (auto s = t.put(log, k, v); !s)
          return s;
      rewritten = edits.size();
      // Format 1's dedup key: (uid, u8 length, device, mid).
      dbi dedup;
      if (auto s = open_tables(t, {{&dedup, "dedup"}}); !s)
        return s;
      auto d = t.open_cursor(dedup);
      if (!d)
        return d.error();
      std::vector<std::pair<std::string, std::string>> old_keys;
      for (auto s = d->first(); s && d->valid(); s = d->next()) {
        std::string k{d->key()};
        old_keys.emplace_back(k, std::string{d->value()});
      }
      for (auto& [k, v] : old_keys) {
        if (auto s = t.del(dedup, k); !s)
          return s;
        if (auto s = t.put(dedup, k.substr(8) + k.substr(0, 8), v); !s)
          return s;
      }
      dedups = old_keys.size();
      // Format 1's state rows: 16 bytes (no journal then).
      dbi state;
      if (auto s = open_tables(t, {{&state, "state"}}); !s)
        return s;
      size_t rows = 0, with_segments = 0;
      if (auto s = to_v3_state_rows(t, state, rows, with_segments); !s)
        return s;
      REQUIRE(with_segments == 0);
      return {};
    });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
  }
  REQUIRE(rewritten >= 1); // the DELIVERED receipt, at least
  REQUIRE(dedups == 1);
  server_store_options o;
  o.env.sync = false;
  auto db = server_store::open(dir, o);
  REQUIRE_MESSAGE(db.ok(), db.error().to_string());
  std::vector<log_record> recs;
  REQUIRE((*db)->read_log(f.alice.uid, 0, 100, 1 << 20, recs).ok());
  size_t statuses = 0;
  for (auto& r : recs) {
    if (r.type != codec::frame_type::status_update)
      continue;
    ++statuses;
    codec::status_update su;
    REQUIRE(
      codec::decode_body(
        reinterpret_cast<const uint8_t*>(r.frame.data()) + codec::header_size,
        r.frame.size() - codec::header_size, su) == codec::errc::ok);
    CHECK(su.mid == 1);
    CHECK(su.receivers == 0);
  }
  CHECK(statuses >= 1);
  // The dedup entry moved to its new key: a resend is still recognised.
  append_op resend;
  resend.sender_uid = f.alice.uid;
  resend.app_id = "demo";
  resend.sender = "alice";
  resend.device = "a1";
  resend.msg.mid = 1;
  resend.msg.peer = "bob";
  resend.msg.payload = "hi";
  resend.now_ms = t0;
  std::vector<write_op> ops{resend};
  std::vector<write_outcome> out;
  std::vector<uint64_t> touched;
  REQUIRE((*db)->apply(ops, out, touched).ok());
  CHECK(out[0].append.duplicate);
  CHECK(out[0].append.status == message_status::sent);
  // Migrated once: opening again finds format 2 and changes nothing.
  db->reset();
  auto again = server_store::open(dir, o);
  REQUIRE_MESSAGE(again.ok(), again.error().to_string());
}

// -- the journal: new records go to journal gens and move into the log an
// epoch at a time (server_store.cpp, "the journal")

namespace {

/// The message records of bob's log, in order, as "seq:payload".
std::vector<std::string> bob_messages(fixture& f) {
  std::vector<std::string> out;
  for (auto& r : f.log_of(f.bob.uid))
    if (r.type == codec::frame_type::message)
      out.push_back(std::to_string(r.seq) + ":" +
                    f.decode<codec::message>(r).payload);
  return out;
}

/// Entries of bob's in the raw tables: in `log`, and in the journal ones.
std::pair<size_t, size_t> raw_entries_of(fixture& f, uint64_t uid) {
  auto& e = f.db->environment();
  size_t in_log = 0, in_journal = 0;
  auto st = e.write([&](txn& t) -> status {
    for (auto name : {"log", "journal_0", "journal_1"}) {
      auto db = t.open_dbi(name);
      if (!db)
        return db.error();
      auto c = t.open_cursor(*db);
      if (!c)
        return c.error();
      bool journal = std::string_view{name} != "log";
      for (auto s = c->first(); s && c->valid(); s = c->next())
        if (get_be64(c->key().data() + (journal ? 8 : 0)) == uid)
          ++(journal ? in_journal : in_log);
    }
    return {};
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  return {in_log, in_journal};
}

} // namespace

TEST_CASE("journal: every record reads the same before, during and after "
          "its move into the log, and across a reopen") {
  // Epochs of 16 gens: the 70 one-message batches cross four of them.
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 16; }};
  std::vector<std::string> want;
  uint64_t acked = 0;
  bool seen_both = false; // some records in the log, some in the journal
  for (uint64_t i = 1; i <= 70; ++i) {
    if (i == 33) { // a reopen in the middle of an epoch
      f.db.reset();
      auto s = server_store::open(f.dir.path(), f.opts);
      REQUIRE_MESSAGE(s.ok(), s.error().to_string());
      f.db = std::move(*s);
    }
    auto out = f.send(i, "bob", "m" + std::to_string(i));
    REQUIRE(out.status == message_status::sent);
    want.push_back(std::to_string(f.db->head(f.bob.uid)) + ":m" +
                   std::to_string(i));
    if (i % 5 == 0) { // DELIVERED receipts read what the ack covers
      f.apply({ack_op{f.bob.uid, "b1", f.db->head(f.bob.uid), t0}});
      acked = i;
    }
    REQUIRE(bob_messages(f) == want);
    // alice's log (her copies and the receipts) moves in an earlier share
    // of each epoch than bob's: in between, one is in the log and the
    // other in the journal. Both read whole.
    auto mine = f.log_of(f.alice.uid);
    REQUIRE(mine.size() == f.db->head(f.alice.uid));
    for (size_t k = 0; k < mine.size(); ++k)
      REQUIRE(mine[k].seq == k + 1);
    auto [in_log, in_journal] = raw_entries_of(f, f.bob.uid);
    CHECK(in_log + in_journal == f.db->head(f.bob.uid));
    seen_both = seen_both || (in_log > 0 && in_journal > 0);
  }
  CHECK(seen_both);
  CHECK(acked == 70);
  // Every receipt exactly once, in order.
  auto rs = f.receipts();
  std::vector<uint64_t> mids;
  for (auto& r : rs)
    if (r.value == message_status::delivered)
      mids.push_back(r.mid);
  std::vector<uint64_t> all(70);
  std::iota(all.begin(), all.end(), 1);
  CHECK(mids == all);

  // History, newest first, in pages that cross the log/journal boundary.
  std::vector<uint64_t> history;
  uint64_t before = 0;
  for (int pages = 0; pages < 100; ++pages) {
    codec::sync_page page;
    REQUIRE(f.db
              ->read_conversation(f.bob.uid, "alice", 0, before, 7, 1000,
                                  1 << 20, page)
              .ok());
    for (auto& m : page.messages)
      history.push_back(m.mid);
    if (page.complete)
      break;
    REQUIRE(page.resume_before != 0);
    before = page.resume_before;
  }
  std::vector<uint64_t> newest_first(all.rbegin(), all.rend());
  CHECK(history == newest_first);

  // Edits of a record in the log and of one still in the journal.
  for (uint64_t mid : {1, 70}) {
    auto op = change_by_alice(codec::update_kind::edit, mid, "edited");
    op.uid = f.alice.uid;
    auto out = f.apply({op});
    REQUIRE(out[0].st.ok());
    REQUIRE_MESSAGE(out[0].refusal.ok(), out[0].refusal.to_string());
  }
  auto now = bob_messages(f);
  CHECK(now.front() == want.front().substr(0, want.front().find(':')) +
                         ":edited");
  CHECK(now.back() == want.back().substr(0, want.back().find(':')) +
                        ":edited");
  CHECK(f.db->log_size(f.bob.uid) == f.db->head(f.bob.uid));

  // flush_journal leaves each log in one range of `log`.
  REQUIRE(f.db->flush_journal().ok());
  auto [in_log, in_journal] = raw_entries_of(f, f.bob.uid);
  CHECK(in_journal == 0);
  CHECK(in_log == f.db->head(f.bob.uid));
  CHECK(bob_messages(f) == now); // the edits survive the move
  size_t edited = 0;
  for (auto& r : f.log_of(f.alice.uid))
    if (r.type == codec::frame_type::message)
      edited += f.decode<codec::message>(r).payload == "edited";
  CHECK(edited == 2);

  // And batches go on after the flush, across the next epochs.
  for (uint64_t i = 71; i <= 90; ++i) {
    f.send(i, "bob", "m" + std::to_string(i));
    REQUIRE(bob_messages(f).size() == i);
    REQUIRE(f.log_of(f.alice.uid).size() == f.db->head(f.alice.uid));
  }
  CHECK(bob_messages(f).front() == now.front());
}

TEST_CASE("journal: deleting a user removes its records from the journal "
          "too") {
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 8; }};
  for (uint64_t i = 1; i <= 12; ++i) // across an epoch: both tables used
    f.send(i, "bob", "m");
  auto [in_log, in_journal] = raw_entries_of(f, f.bob.uid);
  REQUIRE(in_journal > 0);
  REQUIRE(f.db->user_delete("demo", "bob").ok());
  auto after = raw_entries_of(f, f.bob.uid);
  CHECK(after.first == 0);
  CHECK(after.second == 0);
  // The next epochs' moves do not bring anything of bob's back.
  for (uint64_t i = 13; i <= 30; ++i)
    f.send(i, "alice", "to myself");
  after = raw_entries_of(f, f.bob.uid);
  CHECK(after.first == 0);
  CHECK(after.second == 0);
  (void) in_log;
}

TEST_CASE("format 3 is migrated: state rows become varints, the journal of "
          "8-batch epochs moves into the log, every record reads the same") {
  // Format 3: epochs of 8 gens (a constant then, no meta "jepoch").
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 8; }};
  // Gens 1..17: bob's epoch-0 records moved at gen 15, epoch 1's wait.
  for (uint64_t i = 1; i <= 16; ++i)
    f.send(i, "bob", "m" + std::to_string(i));
  f.apply({ack_op{f.bob.uid, "b1", f.db->head(f.bob.uid), t0}});
  auto bob_before = bob_messages(f);
  auto alice_before = f.log_of(f.alice.uid).size();
  auto raw_before = raw_entries_of(f, f.bob.uid);
  REQUIRE(raw_before.first > 0);  // epoch 0's share moved
  REQUIRE(raw_before.second > 0); // epoch 1 in the journal: bob has segments
  f.db.reset();
  // Make it a format-3 directory: fixed 16 + 16 k byte state rows.
  size_t rows = 0, with_segments = 0;
  {
    auto e = env::open(f.dir.path(), {});
    REQUIRE(e.ok());
    dbi meta, state;
    auto st = (*e)->write([&](txn& t) -> status {
      if (auto s = open_tables(t, {{&meta, "meta"}, {&state, "state"}}); !s)
        return s;
      if (auto s = set_format(t, meta, "format", 3); !s)
        return s;
      if (auto s = t.del(meta, "jepoch"); !s)
        return s;
      return to_v3_state_rows(t, state, rows, with_segments);
    });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
  }
  REQUIRE(rows == 2);
  REQUIRE(with_segments >= 1);
  auto db = server_store::open(f.dir.path(), server_store_options{});
  REQUIRE_MESSAGE(db.ok(), db.error().to_string());
  f.db = std::move(*db);
  CHECK(raw_entries_of(f, f.bob.uid) ==
        std::pair<size_t, size_t>{bob_before.size(), 0});
  CHECK(bob_messages(f) == bob_before);
  CHECK(f.log_of(f.alice.uid).size() == alice_before);
  CHECK(f.db->head(f.bob.uid) == bob_before.size());
  // The batches go on where they were, in epochs of 16 now.
  for (uint64_t i = 17; i <= 80; ++i)
    f.send(i, "bob", "m" + std::to_string(i));
  auto now = bob_messages(f);
  REQUIRE(now.size() == 80);
  CHECK(std::equal(bob_before.begin(), bob_before.end(), now.begin()));
  CHECK(now.back() == std::to_string(f.db->head(f.bob.uid)) + ":m80");
  auto raw = raw_entries_of(f, f.bob.uid);
  CHECK(raw.first + raw.second == 80);
  CHECK(raw.second > 0);
}

TEST_CASE("journal: opening with another epoch length moves the journal "
          "into the log first; records read the same at every length") {
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 5; }};
  uint64_t i = 0;
  for (uint32_t len : {5u, 1u, 32u, 7u}) {
    if (len != 5) {
      f.db.reset();
      f.opts.journal_epoch = len;
      auto db = server_store::open(f.dir.path(), f.opts);
      REQUIRE_MESSAGE(db.ok(), db.error().to_string());
      f.db = std::move(*db);
      CHECK(raw_entries_of(f, f.bob.uid).second == 0); // all in `log`
      REQUIRE(bob_messages(f).size() == i);
    }
    for (uint64_t k = 0; k < 3 * len + 2; ++k) { // across epochs
      ++i;
      f.send(i, "bob", "m" + std::to_string(i));
    }
    auto msgs = bob_messages(f);
    REQUIRE(msgs.size() == i);
    for (size_t k = 0; k < msgs.size(); ++k)
      REQUIRE(msgs[k] == std::to_string(k + 1) + ":m" + std::to_string(k + 1));
    REQUIRE(f.log_of(f.alice.uid).size() == f.db->head(f.alice.uid));
  }
  f.db.reset();
  f.opts.journal_epoch = 0;
  auto bad = server_store::open(f.dir.path(), f.opts);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code() == status_code::invalid_argument);
  CHECK(bad.error().message().find("1 to 1024 (64 is the default)") !=
        std::string::npos);
  // A length the directory holds but cannot be read is corruption, not 8.
  {
    auto e = env::open(f.dir.path(), {});
    REQUIRE(e.ok());
    dbi meta;
    auto st = (*e)->write([&](txn& t) -> status {
      if (auto s = open_tables(t, {{&meta, "meta"}}); !s)
        return s;
      return t.put(meta, "jepoch", std::string(3, '\0'));
    });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
  }
  f.opts.journal_epoch = 16;
  auto corrupt = server_store::open(f.dir.path(), f.opts);
  REQUIRE_FALSE(corrupt.ok());
  CHECK(corrupt.error().code() == status_code::corruption);
}

TEST_CASE("journal: a big batch takes up to 8 gens, never past its "
          "epoch's last; every record reads the same, in order, across "
          "epochs and a reopen") {
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 16; }};
  constexpr size_t n_users = 30;
  std::vector<uint64_t> uid;
  for (size_t j = 0; j < n_users; ++j) {
    auto u = f.db->user_add("demo", "u" + std::to_string(j), "", 0, t0);
    REQUIRE(u.ok());
    uid.push_back(u->uid);
  }
  std::vector<std::vector<std::string>> want(n_users);
  uint64_t mid = 0;
  auto batch = [&](size_t n) {
    std::vector<write_op> ops;
    for (size_t k = 0; k < n; ++k) {
      ++mid;
      size_t j = mid % n_users;
      ops.push_back(fixture::message(
        f.alice.uid, "alice", "a1", mid, "u" + std::to_string(j),
        codec::message_flags::delivery_receipt, "m" + std::to_string(mid)));
      want[j].push_back("m" + std::to_string(mid));
    }
    for (auto& o : f.apply(std::move(ops)))
      REQUIRE(o.append.status == message_status::sent);
  };
  auto check = [&] {
    for (size_t j = 0; j < n_users; ++j) {
      std::vector<std::string> got;
      uint64_t last = 0;
      for (auto& r : f.log_of(uid[j])) {
        REQUIRE(r.seq == last + 1);
        last = r.seq;
        got.push_back(f.decode<codec::message>(r).payload);
      }
      REQUIRE(got == want[j]);
      REQUIRE(last == f.db->head(uid[j]));
    }
  };
  auto gen = [&] {
    uint64_t g = 0;
    auto st = f.db->environment().write([&](txn& t) -> status {
      dbi meta;
      if (auto s = open_tables(t, {{&meta, "meta"}}); !s)
        return s;
      auto v = t.get(meta, "jgen");
      if (!v)
        return v.error();
      if (*v && (*v)->size() == 8)
        for (int b = 7; b >= 0; --b) // little-endian
          g = (g << 8) | static_cast<unsigned char>((**v)[b]);
      return {};
    });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return g;
  };
  // Batches of 1, 300 (2 gens) and 1,100 messages (8 gens, or fewer where
  // the epoch ends sooner): about 150 gens, nine epochs.
  const size_t sizes[] = {1, 300, 1100};
  for (int round = 0; round < 40; ++round) {
    if (round == 20) { // a reopen in the middle of an epoch
      f.db.reset();
      auto s = server_store::open(f.dir.path(), f.opts);
      REQUIRE_MESSAGE(s.ok(), s.error().to_string());
      f.db = std::move(*s);
    }
    uint64_t before = gen();
    size_t n = sizes[round % 3];
    batch(n);
    uint64_t after = gen();
    uint64_t step = n == 1 ? 1 : n == 300 ? 2 : 8;
    uint64_t last_of_epoch = (before / 16 + 1) * 16 - 1;
    CHECK(after == std::min(before + step, before < last_of_epoch
                                             ? last_of_epoch
                                             : last_of_epoch + 16));
    check();
  }
  CHECK(gen() > 100);
  REQUIRE(f.db->flush_journal().ok());
  for (size_t j = 0; j < n_users; ++j) {
    auto [in_log, in_journal] = raw_entries_of(f, uid[j]);
    CHECK(in_journal == 0);
    CHECK(in_log == f.db->head(uid[j]));
  }
  check();
}

TEST_CASE("journal: a fresh directory at the default epoch length moves "
          "every epoch into the log") {
  // The first open moves the (empty) journal and marks it all moved; the
  // first epoch with something to move must start from the first user.
  fixture f;
  for (uint64_t i = 1; i <= 3 * 64 + 5; ++i)
    f.send(i, "bob", "m" + std::to_string(i));
  auto msgs = bob_messages(f);
  REQUIRE(msgs.size() == 3 * 64 + 5);
  for (size_t k = 0; k < msgs.size(); ++k)
    REQUIRE(msgs[k] == std::to_string(k + 1) + ":m" + std::to_string(k + 1));
  auto [in_log, in_journal] = raw_entries_of(f, f.bob.uid);
  CHECK(in_log >= 2 * 64 - 1); // two epochs moved
}

TEST_CASE("journal: an epoch's move larger than its memory budget (1 MiB) "
          "goes out in parts, every record once and in order") {
  // Epochs of 8 gens, batches of five 200 KB messages: 8 MB of alice's
  // copies and 8 MB of bob's in each epoch. The shares move one user each,
  // flush_journal both users of the epoch filling: each goes out in parts.
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 8; }};
  auto payload_of = [](uint64_t i) {
    return std::string(200 * 1024, static_cast<char>('a' + i % 26));
  };
  uint64_t mid = 0;
  auto batch = [&] {
    std::vector<write_op> ops;
    for (int k = 0; k < 5; ++k) {
      ++mid;
      ops.push_back(fixture::message(f.alice.uid, "alice", "a1", mid, "bob", 0,
                                     payload_of(mid)));
    }
    for (auto& o : f.apply(ops))
      REQUIRE((o.st.ok() && o.append.status == message_status::sent));
  };
  auto check = [&] {
    for (auto uid : {f.alice.uid, f.bob.uid}) {
      std::vector<log_record> recs;
      REQUIRE(f.db->read_log(uid, 0, 1000, 256 << 20, recs).ok());
      std::vector<uint64_t> mids;
      for (auto& r : recs) {
        auto m = f.decode<codec::message>(r);
        REQUIRE(m.payload == payload_of(m.mid));
        mids.push_back(m.mid);
      }
      std::vector<uint64_t> want(mid);
      std::iota(want.begin(), want.end(), 1);
      REQUIRE(mids == want);
    }
  };
  for (int b = 0; b < 28; ++b) // gens 1..28: bob's epochs 0, 1 moved
    batch();
  check();
  auto [in_log, in_journal] = raw_entries_of(f, f.bob.uid);
  CHECK(in_log == 75); // gens 1..15
  CHECK(in_journal > 0);
  REQUIRE(f.db->flush_journal().ok());
  CHECK(raw_entries_of(f, f.bob.uid) == std::pair<size_t, size_t>{mid, 0});
  CHECK(raw_entries_of(f, f.alice.uid) == std::pair<size_t, size_t>{mid, 0});
  check();
  for (int b = 0; b < 12; ++b) // and on, across the next epoch
    batch();
  check();
}

TEST_CASE("a payload over the protocol's limit is refused with its reason, "
          "and nothing is stored") {
  fixture f;
  auto op = fixture::message(f.alice.uid, "alice", "a1", 1, "bob", 0,
                             std::string(codec::max_payload + 1, 'x'));
  auto ok = fixture::message(f.alice.uid, "alice", "a1", 2, "bob", 0, "fine");
  auto out = f.apply({op, ok});
  REQUIRE(out[0].st.ok());
  CHECK(out[0].append.status == message_status::fail);
  CHECK(out[0].append.text.find("over the limit") != std::string::npos);
  CHECK(out[1].append.status == message_status::sent);
  CHECK(f.db->head(f.bob.uid) == 1);
}

TEST_CASE("journal: an epoch moves in shares; a record edited after its "
          "share moved keeps the edit when the rest is flushed") {
  // Epochs of 8 gens. Users 1 (alice) and 2 (bob) of 3 uids: batch i of
  // an epoch moves the uids below (i + 1) * 3 / 8 of the previous epoch
  // (move_share), so batch 5 moves alice's share, batch 7 bob's.
  fixture f{100000, [](server_store_options& o) { o.journal_epoch = 8; }};
  REQUIRE(f.alice.uid == 1);
  REQUIRE(f.bob.uid == 2);
  for (uint64_t i = 1; i <= 13; ++i) // gens 1..13: mid 1 is in epoch 0
    f.send(i, "bob", "m" + std::to_string(i));
  // Gen 13 (batch 5 of epoch 1) moved alice's epoch-0 records, not bob's.
  auto alice_raw = raw_entries_of(f, f.alice.uid);
  auto bob_raw = raw_entries_of(f, f.bob.uid);
  CHECK(alice_raw.first >= 7); // her copies of mids 1..7 at least
  CHECK(bob_raw.first == 0);
  auto op = change_by_alice(codec::update_kind::edit, 1, "edited");
  op.uid = f.alice.uid;
  auto out = f.apply({op});
  REQUIRE(out[0].st.ok());
  REQUIRE_MESSAGE(out[0].refusal.ok(), out[0].refusal.to_string());
  REQUIRE(f.db->flush_journal().ok());
  for (auto uid : {f.alice.uid, f.bob.uid}) {
    auto log = f.log_of(uid);
    REQUIRE(!log.empty());
    CHECK(f.decode<codec::message>(log[0]).payload == "edited");
    CHECK(raw_entries_of(f, uid).second == 0);
  }
}
