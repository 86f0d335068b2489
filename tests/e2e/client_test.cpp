// libparley against a real server on loopback with real TLS: statuses
// through listeners, offline delivery, the outbox across restarts,
// reconnects, SIGNOUT/AUTHFAIL, read sessions, summary, many clients on one
// runtime, and callbacks that call back into the facade.

#include "tests/support/temp_dir.hpp"
#include "tests/support/test_client.hpp"

#include "api/runtime_impl.hpp"
#include <parley/client.hpp>
#include <parley/server.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

using namespace parley;
using namespace std::chrono_literals;

namespace {

/// Records every event; tests wait for conditions on what it saw.
class recorder : public listener {
 public:
  void on_connection_status(connection_status s,
                            const std::string& reason) override {
    std::lock_guard<std::mutex> g{mtx_};
    statuses.push_back(s);
    reasons.push_back(reason);
    cv_.notify_all();
  }
  void on_message(const message& m, message_origin) override {
    std::function<void(const message&)> hook;
    {
      std::lock_guard<std::mutex> g{mtx_};
      messages.push_back(m);
      order.push_back("message " + m.payload);
      hook = on_msg;
      cv_.notify_all();
    }
    if (hook)
      hook(m);
  }
  void on_message_status(const message& m, const std::string& r) override {
    std::lock_guard<std::mutex> g{mtx_};
    updates.push_back(m);
    update_reasons.push_back(r);
    cv_.notify_all();
  }
  void on_group_event(const group_event& ev) override {
    std::lock_guard<std::mutex> g{mtx_};
    group_events.push_back(ev);
    cv_.notify_all();
  }
  void on_message_update(const message& m) override {
    std::lock_guard<std::mutex> g{mtx_};
    changes.push_back(m);
    cv_.notify_all();
  }
  void on_member_status(const message& m, const std::string& member,
                        message_status s) override {
    std::lock_guard<std::mutex> g{mtx_};
    member_statuses.push_back(member + " " + std::string{to_string(s)} + " " +
                              std::to_string(m.id));
    cv_.notify_all();
  }
  void on_sync(const std::string&, uint32_t, size_t count) override {
    std::lock_guard<std::mutex> g{mtx_};
    syncs.push_back(count);
    cv_.notify_all();
  }
  void on_presence(const presence& p) override {
    std::lock_guard<std::mutex> g{mtx_};
    presences.push_back(p);
    order.push_back(std::string{"presence "} + to_string(p.kind));
    cv_.notify_all();
  }

  /// Waits until `pred()` holds (under the lock); false after `within`.
  bool wait(std::function<bool()> pred,
            std::chrono::milliseconds within = 15s) {
    std::unique_lock<std::mutex> g{mtx_};
    return cv_.wait_for(g, within, pred);
  }

  bool saw_status(connection_status s) {
    return wait([&] {
      return std::find(statuses.begin(), statuses.end(), s) != statuses.end();
    });
  }

  /// The reason given with the first report of status `s`.
  std::string reason_of(connection_status s) {
    std::lock_guard<std::mutex> g{mtx_};
    for (size_t i = 0; i < statuses.size(); ++i)
      if (statuses[i] == s)
        return reasons[i];
    return {};
  }

  /// Statuses that message `id` went through, in order.
  std::vector<message_status> history(uint64_t id) {
    std::lock_guard<std::mutex> g{mtx_};
    std::vector<message_status> out;
    for (auto& m : updates)
      if (m.id == id)
        out.push_back(m.status);
    return out;
  }

  bool reached(uint64_t id, message_status s) {
    return wait([&] {
      for (auto& m : updates)
        if (m.id == id && m.status == s)
          return true;
      return false;
    });
  }

  size_t message_count() {
    std::lock_guard<std::mutex> g{mtx_};
    return messages.size();
  }

  std::vector<connection_status> statuses;
  std::vector<std::string> reasons;
  std::vector<message> messages;
  std::vector<message> updates;
  std::vector<std::string> update_reasons;
  std::vector<group_event> group_events;
  std::vector<presence> presences;
  std::vector<message> changes; ///< on_message_update
  /// on_member_status: "member STATUS id".
  std::vector<std::string> member_statuses;
  std::vector<size_t> syncs;    ///< on_sync counts
  std::vector<std::string> order; ///< Messages and presence, as they came.
  std::function<void(const message&)> on_msg;

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
};

struct fixture {
  test::temp_dir dir;
  server_options sopts;
  std::unique_ptr<server> srv;
  std::shared_ptr<runtime> rt;
  std::map<std::string, std::string> tokens;
  /// Added to the server's clock: tests move its time forward.
  std::shared_ptr<std::atomic<uint64_t>> skew_ms =
    std::make_shared<std::atomic<uint64_t>>(0);

  fixture() {
    sopts.port = 0;
    sopts.data_dir = dir.path() + "/server";
    sopts.log_level = "warn";
    sopts.threads = 2;
    sopts.clock = [skew = skew_ms] {
      using namespace std::chrono;
      return static_cast<uint64_t>(duration_cast<milliseconds>(
                                     system_clock::now().time_since_epoch())
                                     .count()) +
             skew->load();
    };
    start_server();
    REQUIRE(srv->app_add("demo").ok());
    for (auto u : {"alice", "bob", "carol"})
      tokens[u] = srv->user_add("demo", u)->token;
    auto r = runtime::create({2, 2});
    REQUIRE(r.ok());
    rt = *r;
  }

  void start_server() {
    auto s = server::start(sopts);
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
    srv = std::move(*s);
    sopts.port = srv->port();
  }

  client_options opts(const std::string& user, const std::string& db = {}) {
    client_options o;
    o.app_id = "demo";
    o.token = tokens[user];
    o.port = sopts.port; // also while the server is down
    o.ca_file = sopts.data_dir + "/cert.pem";
    o.database = db;
    o.backoff_min = 50ms;
    o.backoff_max = 500ms;
    return o;
  }

  std::unique_ptr<client> make(const client_options& o,
                               std::shared_ptr<recorder> rec) {
    auto c = client::create(o, rt);
    REQUIRE_MESSAGE(c.ok(), c.error().to_string());
    (*c)->add_listener(rec);
    return std::move(*c);
  }

  /// Stops `leaver` and returns once what it acked is committed: its
  /// session hands its last acks to the storage before it ends (the
  /// watcher, subscribed to it, hears offline after that), and an admin
  /// call commits what the storage holds before it runs.
  void stop_committed(client& leaver, const std::string& address,
                      client& watcher, recorder& seen) {
    REQUIRE(watcher.subscribe_presence({address}).ok());
    REQUIRE(seen.wait([&] { return seen.presences.size() == 1; }));
    leaver.stop();
    REQUIRE(seen.wait([&] {
      return seen.presences.size() == 2 &&
             seen.presences[1].kind == presence_kind::offline;
    }));
    REQUIRE(srv->user_add("demo", "zed").ok());
  }

  /// Creates, starts and waits until online.
  std::unique_ptr<client> online(const client_options& o,
                                 std::shared_ptr<recorder> rec) {
    auto c = make(o, rec);
    REQUIRE(c->start().ok());
    REQUIRE(rec->saw_status(connection_status::online));
    return c;
  }
};

} // namespace

TEST_CASE("listeners: each added once, removed at once, also from its own "
          "callback") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto b = f.online(f.opts("bob"), rb);
  auto rb2 = std::make_shared<recorder>();
  auto rb3 = std::make_shared<recorder>();
  b->add_listener(rb); // a second time: still told once
  b->add_listener(rb2);
  b->add_listener(rb3);
  std::shared_ptr<listener> self3 = rb3;
  rb3->on_msg = [&](const message&) { b->remove_listener(self3); };
  REQUIRE(a->send("bob", "one").ok());
  REQUIRE(rb2->wait([&] { return rb2->messages.size() == 1; }));
  REQUIRE(rb3->wait([&] { return rb3->messages.size() == 1; }));
  b->remove_listener(rb2);
  REQUIRE(a->send("bob", "two").ok());
  REQUIRE(a->send("bob", "three").ok());
  // A client's events run in order: once rb has "three", the event of
  // "two" has been offered to every listener it had.
  REQUIRE(rb->wait([&] {
    return !rb->messages.empty() && rb->messages.back().payload == "three";
  }));
  CHECK(rb->messages.size() == 3);
  CHECK(rb2->messages.size() == 1);
  CHECK(rb3->messages.size() == 1);
}

TEST_CASE("two clients: OUTBOX, SENT, DELIVERED, READ through listeners") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto b = f.online(f.opts("bob"), rb);
  auto id = a->send("bob", "hello bob");
  REQUIRE(id.ok());
  CHECK(a->get(*id)->status <= message_status::sent);
  REQUIRE(rb->wait([&] { return !rb->messages.empty(); }));
  CHECK(rb->messages[0].payload == "hello bob");
  CHECK(rb->messages[0].sender == "alice");
  CHECK(rb->messages[0].peer == "alice");
  REQUIRE(ra->reached(*id, message_status::delivered));
  REQUIRE(b->mark_read("alice").ok());
  REQUIRE(ra->reached(*id, message_status::read));
  auto h = ra->history(*id);
  CHECK(h == std::vector<message_status>{message_status::sent,
                                         message_status::delivered,
                                         message_status::read});
  CHECK(a->get(*id)->status == message_status::read);
}

TEST_CASE("acks under a small window: every status record reaches the "
          "sender, and the device's cursor is the log's head") {
  fixture f;
  // A small window: a client that left status records unacked while it
  // sends nothing would stall after the last send with 8 in flight.
  f.srv.reset();
  f.sopts.window = 8;
  f.start_server();
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto ao = f.opts("alice");
  ao.device_id = "a1";
  auto a = f.online(ao, ra);
  auto b = f.online(f.opts("bob"), rb);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 19; ++i) {
    auto id = a->send("bob", "m" + std::to_string(i));
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  // DELIVERED for each needs bob's acks; seeing the last of 38 records
  // needs alice's acks without a send of hers.
  for (auto id : ids)
    REQUIRE(ra->reached(id, message_status::delivered));
  REQUIRE(rb->wait([&] { return rb->messages.size() == 19; }));
  auto last = a->send("bob", "last");
  REQUIRE(last.ok());
  REQUIRE(ra->reached(*last, message_status::delivered));
  // Everything alice stored was acked by the time she stopped: the
  // device's cursor is the log's head at the next login.
  f.stop_committed(*a, "alice", *b, *rb);
  auto raw =
    test::test_client::connect(f.sopts.port, f.sopts.data_dir + "/cert.pem");
  auto ok = raw->login("demo", f.tokens["alice"], "a1");
  CHECK(ok.head_seq == 40);
  CHECK(ok.cursor == ok.head_seq);
}

TEST_CASE("acks: what a client stored and had not acked when its "
          "connection dropped is acked at the next login") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto ao = f.opts("alice");
  ao.device_id = "a1";
  auto a = f.online(ao, ra);
  auto b = f.online(f.opts("bob"), rb);
  auto id = a->send("bob", "hello");
  REQUIRE(id.ok());
  // Its SENT and DELIVERED records only move alice's cursor: their ack
  // waits for her next frame, and the drop below loses it.
  REQUIRE(ra->reached(*id, message_status::delivered));
  REQUIRE(a->reconnect().ok());
  // alice sends nothing after this login but what the login itself acks.
  // A new device of hers starts at the least advanced cursor of her
  // devices, so a1's cursor shows in each probe's login_ok; each probe
  // acks the head before it leaves, so it does not hold the minimum down.
  // (Without the ack at login a1's cursor stays 2 records back until its
  // next ping, 30 s later.)
  uint64_t cursor = 0, head = 0;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    auto probe =
      test::test_client::connect(f.sopts.port, f.sopts.data_dir + "/cert.pem");
    auto ok = probe->login("demo", f.tokens["alice"], "p" + std::to_string(i));
    cursor = ok.cursor;
    head = ok.head_seq;
    probe->send(codec::ack{head});
    probe->send(codec::goodbye{});
    REQUIRE(probe->wait_closed());
    if (cursor == head)
      break;
  }
  CHECK(head == 2);
  CHECK(cursor == head);
}

TEST_CASE("a message to an offline user arrives when it starts") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto id = a->send("bob", "while you were away");
  REQUIRE(ra->reached(*id, message_status::sent));
  auto rb = std::make_shared<recorder>();
  auto b = f.online(f.opts("bob"), rb);
  REQUIRE(rb->wait([&] { return rb->messages.size() == 1; }));
  CHECK(rb->messages[0].payload == "while you were away");
  REQUIRE(ra->reached(*id, message_status::delivered));
}

TEST_CASE("failures carry a status and a reason") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto id = a->send("nobody", "hi");
  REQUIRE(ra->reached(*id, message_status::invalid_dest));
  CHECK(ra->update_reasons.back().find("nobody") != std::string::npos);
  send_options now;
  now.expiry_s = 0;
  auto rt_id = a->send("bob", "now or never", now);
  REQUIRE(ra->reached(*rt_id, message_status::user_offline));
}

TEST_CASE("a client restarted on its database sends its outbox; the "
          "receiver sees each message once") {
  fixture f;
  auto db = f.dir.path() + "/alice-db";
  f.srv.reset(); // the server is down
  std::vector<uint64_t> ids;
  {
    auto ra = std::make_shared<recorder>();
    auto a = f.make(f.opts("alice", db), ra);
    REQUIRE(a->start().ok()); // the server is down: messages wait
    for (int i = 0; i < 5; ++i)
      ids.push_back(*a->send("bob", "queued " + std::to_string(i)));
    for (auto id : ids)
      CHECK(a->get(id)->status == message_status::outbox);
  } // the application exits
  f.start_server();
  auto ra = std::make_shared<recorder>();
  auto opts = f.opts("alice", db);
  auto a = f.online(opts, ra);
  for (auto id : ids)
    REQUIRE(ra->reached(id, message_status::sent));
  auto rb = std::make_shared<recorder>();
  auto b = f.online(f.opts("bob"), rb);
  REQUIRE(rb->wait([&] { return rb->messages.size() == 5; }));
  for (int i = 0; i < 5; ++i)
    CHECK(rb->messages[i].payload == "queued " + std::to_string(i));
  // Once more after everything is acknowledged: nothing new arrives.
  auto last = a->send("bob", "barrier");
  REQUIRE(rb->wait([&] { return rb->messages.size() == 6; }));
  CHECK(rb->messages.back().id != 0);
  (void)last;
}

TEST_CASE("a client reconnects after the server restarts") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  f.srv.reset(); // graceful stop: SHUTDOWN, then gone
  REQUIRE(ra->saw_status(connection_status::shutdown));
  f.start_server();
  REQUIRE(ra->wait([&] {
    return std::count(ra->statuses.begin(), ra->statuses.end(),
                      connection_status::online) >= 2;
  }));
  auto id = a->send("bob", "after the restart");
  REQUIRE(ra->reached(*id, message_status::sent));
}

TEST_CASE("a reconnect resumes the TLS session, after a server restart "
          "too; with tls_resume off, or without the server's ticket keys, "
          "the handshake is a full one") {
  fixture f;
  auto online_count = [](recorder& r, size_t n) {
    return r.wait([&] {
      return static_cast<size_t>(std::count(r.statuses.begin(),
                                            r.statuses.end(),
                                            connection_status::online)) >= n;
    });
  };
  auto ra = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  CHECK_FALSE(a->tls_resumed()); // a first login has no ticket
  // A lost network (no goodbye, no close_notify), then back.
  REQUIRE(a->reconnect().ok());
  REQUIRE(online_count(*ra, 2));
  CHECK(a->tls_resumed());
  auto id = a->send("bob", "on a resumed session");
  REQUIRE(ra->reached(*id, message_status::sent));
  // The resumed login got a fresh ticket, which resumes in turn.
  REQUIRE(a->reconnect().ok());
  REQUIRE(online_count(*ra, 3));
  CHECK(a->tls_resumed());
  // The server restarts on the same data directory: it reads its ticket
  // keys back (ticket.keys, 0600) and resumes the ticket it sealed before.
  auto keys = f.sopts.data_dir + "/ticket.keys";
  struct stat st {};
  REQUIRE(::stat(keys.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  f.srv.reset();
  REQUIRE(ra->saw_status(connection_status::shutdown));
  CHECK_FALSE(a->tls_resumed());
  f.start_server();
  REQUIRE(online_count(*ra, 4));
  CHECK(a->tls_resumed());
  auto id2 = a->send("bob", "resumed across the restart");
  REQUIRE(ra->reached(*id2, message_status::sent));
  // Without the key file, a restarted server cannot open the old tickets:
  // a full handshake, with the certificate verified, and the client is
  // online all the same...
  f.srv.reset();
  REQUIRE(std::filesystem::remove(keys));
  f.start_server();
  REQUIRE(online_count(*ra, 5));
  CHECK_FALSE(a->tls_resumed());
  REQUIRE(a->reconnect().ok()); // ...and that login's ticket resumes
  REQUIRE(online_count(*ra, 6));
  CHECK(a->tls_resumed());

  auto o = f.opts("bob");
  o.tls_resume = false;
  auto rb = std::make_shared<recorder>();
  auto b = f.online(o, rb);
  REQUIRE(b->reconnect().ok());
  REQUIRE(online_count(*rb, 2));
  CHECK_FALSE(b->tls_resumed());

  // A server with tickets off sends none: nothing to resume, no key file.
  f.srv.reset();
  std::filesystem::remove(keys);
  f.sopts.tls_ticket_lifetime_s = 0;
  f.start_server();
  REQUIRE(online_count(*ra, 7));
  REQUIRE(a->reconnect().ok());
  REQUIRE(online_count(*ra, 8));
  CHECK_FALSE(a->tls_resumed());
  CHECK_FALSE(std::filesystem::exists(keys));
}

TEST_CASE("SIGNOUT and AUTHFAIL stop reconnecting") {
  fixture f;
  SUBCASE("signout") {
    auto r1 = std::make_shared<recorder>();
    auto o = f.opts("alice");
    o.device_id = "same-device";
    auto first = f.online(o, r1);
    auto r2 = std::make_shared<recorder>();
    auto second = f.online(o, r2);
    REQUIRE(r1->saw_status(connection_status::signout));
    // The second session works, and the first stays signed out.
    auto id = second->send("bob", "still here");
    REQUIRE(r2->reached(*id, message_status::sent));
    CHECK(first->connection() == connection_status::signout);
  }
  SUBCASE("authfail") {
    auto r = std::make_shared<recorder>();
    auto o = f.opts("alice");
    o.token = "pt_not_a_token";
    auto c = f.make(o, r);
    REQUIRE(c->start().ok());
    REQUIRE(r->saw_status(connection_status::authfail));
    CHECK(r->reason_of(connection_status::authfail).find("not known") !=
          std::string::npos);
    // A round trip on another client shows time passed; no reconnect.
    auto ra = std::make_shared<recorder>();
    auto a = f.online(f.opts("alice"), ra);
    auto id = a->send("bob", "x");
    REQUIRE(ra->reached(*id, message_status::sent));
    CHECK(c->connection() == connection_status::authfail);
    CHECK(std::count(r->statuses.begin(), r->statuses.end(),
                     connection_status::connecting) == 1);
  }
}

TEST_CASE("read sessions page a conversation; the summary counts unread") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto rc = std::make_shared<recorder>();
  auto c = f.online(f.opts("carol"), rc);
  auto b = f.online(f.opts("bob"), rb);
  for (int i = 0; i < 7; ++i)
    a->send("bob", "a" + std::to_string(i));
  REQUIRE(rb->wait([&] { return rb->messages.size() == 7; }));
  c->send("bob", "from carol"); // after alice's: carol's is the latest
  REQUIRE(rb->wait([&] { return rb->messages.size() == 8; }));
  auto rs = b->read_session_for("alice");
  auto p1 = rs->read(3);
  REQUIRE(p1.ok());
  REQUIRE(p1->size() == 3);
  CHECK((*p1)[0].payload == "a6"); // newest first
  CHECK((*p1)[2].payload == "a4");
  auto p2 = rs->read(3);
  CHECK((*p2)[0].payload == "a3");
  auto p3 = rs->read(3);
  CHECK(p3->size() == 1);
  CHECK(rs->read(3)->empty());
  auto fifo = b->read_session_for("alice", true);
  CHECK((*fifo->read(2))[0].payload == "a0");
  auto sum = b->summary();
  REQUIRE(sum.ok());
  REQUIRE(sum->size() == 2);
  CHECK((*sum)[0].peer == "carol"); // the most recent conversation first
  CHECK((*sum)[0].unread == 1);
  CHECK((*sum)[1].peer == "alice");
  CHECK((*sum)[1].unread == 7);
  CHECK((*sum)[1].last.payload == "a6");
  REQUIRE(b->mark_read("alice").ok());
  CHECK((*b->summary())[1].unread == 0);
}

TEST_CASE("callbacks may call the facade without deadlock") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto b = f.online(f.opts("bob"), rb);
  client* bob = b.get();
  rb->on_msg = [bob](const message& m) {
    // Answer from inside the callback, and mark it read.
    bob->send(m.sender, "re: " + m.payload);
    bob->mark_read(m.sender);
  };
  auto id = a->send("bob", "ping");
  REQUIRE(ra->wait([&] { return !ra->messages.empty(); }));
  CHECK(ra->messages[0].payload == "re: ping");
  REQUIRE(ra->reached(*id, message_status::read));
}

TEST_CASE("1,000 clients on one runtime, without a thread per client") {
  fixture f;
  constexpr int n = 1000;
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    names.push_back("u" + std::to_string(i));
    f.tokens[names.back()] = f.srv->user_add("demo", names.back())->token;
  }
  auto rec = std::make_shared<recorder>();
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < n; ++i) {
    auto c = f.make(f.opts(names[i]), rec);
    REQUIRE(c->start().ok());
    clients.push_back(std::move(c));
  }
  REQUIRE(rec->wait(
    [&] {
      return std::count(rec->statuses.begin(), rec->statuses.end(),
                        connection_status::online) == n;
    },
    120s));
  for (int i = 0; i < n; ++i)
    REQUIRE(clients[i]->send(names[(i + 1) % n], "hi from " + names[i]).ok());
  REQUIRE(rec->wait([&] { return rec->messages.size() == size_t{n}; }, 120s));
  // Threads of this whole process (server included): far fewer than clients.
  std::ifstream st{"/proc/self/status"};
  std::string line;
  int threads = 0;
  while (std::getline(st, line))
    if (line.rfind("Threads:", 0) == 0)
      threads = std::stoi(line.substr(8));
  CHECK(threads > 0);
  CHECK(threads < 64);
  MESSAGE("threads in the process with 1000 clients + server: " << threads);
}

TEST_CASE("inline callbacks: in order, on the actor threads, and calls that "
          "would wait for the actor refused at once") {
  fixture f;
  auto r = runtime::create({2, 0}); // callback_threads = 0: inline
  REQUIRE(r.ok());
  f.rt = *r;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto b = f.online(f.opts("bob"), rb);
  // bob answers every message from inside his callback: send() works
  // there; mark_read(), which waits for his actor, is refused, saying why.
  auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  std::mutex hm;
  std::vector<status> refused;
  client* bp = b.get();
  rb->on_msg = [&](const message& m) {
    if (std::this_thread::get_id() == caller)
      on_caller = true;
    auto id = bp->send("alice", "re: " + m.payload);
    auto no = bp->mark_read("alice");
    std::lock_guard<std::mutex> g{hm};
    refused.push_back(no);
    if (!id)
      refused.push_back(id.error());
  };
  for (int i = 0; i < 20; ++i)
    REQUIRE(a->send("bob", "m" + std::to_string(i)).ok());
  REQUIRE(ra->wait([&] { return ra->messages.size() == 20; }));
  for (int i = 0; i < 20; ++i)
    CHECK(ra->messages[i].payload == "re: m" + std::to_string(i));
  CHECK(!on_caller);
  {
    std::lock_guard<std::mutex> g{hm};
    REQUIRE(refused.size() == 20); // all refusals, no failed send
    for (auto& st : refused) {
      CHECK(st.code() == status_code::failed_precondition);
      CHECK(st.message().find("inline") != std::string::npos);
    }
  }
  // Outside a callback the same call works.
  CHECK(b->mark_read("alice").ok());
  rb->on_msg = nullptr;
}

TEST_CASE("an untrusted certificate and an unreachable server say why") {
  fixture f;
  SUBCASE("untrusted certificate") {
    auto o = f.opts("alice");
    o.ca_file.clear();
    o.fingerprint = std::string(64, 'A'); // not the server's
    auto r = std::make_shared<recorder>();
    auto c = f.make(o, r);
    REQUIRE(c->start().ok());
    REQUIRE(r->saw_status(connection_status::connect_failure));
    CHECK(
      r->reason_of(connection_status::connect_failure).find("fingerprint") !=
      std::string::npos);
  }
  SUBCASE("nobody listening") {
    auto o = f.opts("alice");
    f.srv.reset();
    auto r = std::make_shared<recorder>();
    auto c = f.make(o, r);
    REQUIRE(c->start().ok());
    REQUIRE(r->saw_status(connection_status::connect_failure));
    CHECK(r->reason_of(connection_status::connect_failure)
            .find("is parleyd running") != std::string::npos);
    // It keeps trying, with backoff, until stopped.
    REQUIRE(r->wait([&] {
      return std::count(r->statuses.begin(), r->statuses.end(),
                        connection_status::connecting) >= 2;
    }));
    c->stop();
    CHECK(c->connection() == connection_status::stopped);
  }
}

TEST_CASE("resend, forward and remove") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto rc = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto b = f.online(f.opts("bob"), rb);
  auto c = f.online(f.opts("carol"), rc);
  auto id = a->send("bob", "original");
  REQUIRE(rb->wait([&] { return rb->messages.size() == 1; }));
  // A message the server accepted is not resent; a failed one is.
  REQUIRE(ra->reached(*id, message_status::sent));
  CHECK(a->resend(*id).code() == status_code::failed_precondition);
  CHECK(a->resend(424242).code() == status_code::not_found);
  auto late = a->send("dave", "before dave exists");
  REQUIRE(ra->reached(*late, message_status::invalid_dest));
  REQUIRE(f.srv->user_add("demo", "dave").ok());
  REQUIRE(a->resend(*late).ok());
  REQUIRE(ra->reached(*late, message_status::sent));
  auto marker = a->send("bob", "marker");
  REQUIRE(rb->wait([&] { return rb->messages.size() == 2; }));
  CHECK(rb->messages[1].payload == "marker");
  // Bob forwards what he got to carol: a new message, from bob.
  auto fwd = b->forward(rb->messages[0].id, "carol");
  REQUIRE(fwd.ok());
  REQUIRE(rc->wait([&] { return rc->messages.size() == 1; }));
  CHECK(rc->messages[0].payload == "original");
  CHECK(rc->messages[0].sender == "bob");
  // Removing deletes locally only.
  REQUIRE(b->remove(rb->messages[0].id).ok());
  CHECK(b->get(rb->messages[0].id).error().code() == status_code::not_found);
  auto rs = b->read_session_for("alice");
  auto page = rs->read(10);
  REQUIRE(page.ok());
  REQUIRE(page->size() == 1);
  CHECK((*page)[0].payload == "marker");
  (void)marker;
}

TEST_CASE("groups through the SDK: create, events, messages, refusals") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  auto b = f.online(f.opts("bob"), rb);
  auto g = a->create_group("team", {{"bob", 0}, {"carol", 0}});
  REQUIRE_MESSAGE(g.ok(), g.error().to_string());
  CHECK(g->name == "team");
  CHECK(g->owner == "alice");
  CHECK(g->members.size() == 3);
  CHECK(g->my_flags ==
        (member_flags::send | member_flags::recv | member_flags::admin));
  REQUIRE(rb->wait([&] { return !rb->group_events.empty(); }));
  CHECK(rb->group_events[0].kind == group_event_kind::created);
  CHECK(rb->group_events[0].group_id == g->id);
  CHECK(rb->group_events[0].actor == "alice");
  auto id = a->send_to_group(g->id, "hello team");
  REQUIRE(id.ok());
  REQUIRE(rb->wait([&] { return !rb->messages.empty(); }));
  CHECK(rb->messages[0].group_id == g->id);
  CHECK(rb->messages[0].sender == "alice");
  CHECK(rb->messages[0].peer.empty());
  CHECK(rb->messages[0].payload == "hello team");
  // bob has it: alice hears so per member; the message itself stays SENT
  // while carol (offline) does not have it.
  auto tag = [&](const char* who, message_status s) {
    return std::string{who} + " " + std::string{to_string(s)} + " " +
           std::to_string(*id);
  };
  REQUIRE(ra->wait([&] {
    return std::count(ra->member_statuses.begin(), ra->member_statuses.end(),
                      tag("bob", message_status::delivered)) == 1;
  }));
  CHECK(a->get(*id)->status == message_status::sent);
  auto receipts = a->group_receipts(*id);
  REQUIRE(receipts.ok());
  REQUIRE(receipts->size() == 1);
  CHECK((*receipts)[0].member == "bob");
  CHECK((*receipts)[0].status == message_status::delivered);
  // bob reads the group's conversation: alice learns that bob read it.
  REQUIRE(b->mark_group_read(g->id).ok());
  REQUIRE(ra->wait([&] {
    return std::count(ra->member_statuses.begin(), ra->member_statuses.end(),
                      tag("bob", message_status::read)) == 1;
  }));
  CHECK(a->get(*id)->status == message_status::sent);
  CHECK(a->mark_group_read(0).code() == status_code::invalid_argument);
  // bob is no admin: refused, with the reason.
  auto no = b->add_group_members(g->id, {{"carol", 0}});
  CHECK(no.code() == status_code::permission_denied);
  CHECK(no.message().find("admin") != std::string::npos);
  // carol was offline: she gets the event and the message when she starts.
  auto rc = std::make_shared<recorder>();
  auto c = f.online(f.opts("carol"), rc);
  REQUIRE(rc->wait(
    [&] { return !rc->messages.empty() && !rc->group_events.empty(); }));
  CHECK(rc->messages[0].payload == "hello team");
  // Every member has it now: the summary is DELIVERED; carol reads it, and
  // with every member at READ the summary is READ.
  REQUIRE(ra->reached(*id, message_status::delivered));
  REQUIRE(c->mark_group_read(g->id).ok());
  REQUIRE(ra->reached(*id, message_status::read));
  CHECK(ra->history(*id) ==
        std::vector<message_status>{message_status::sent,
                                    message_status::delivered,
                                    message_status::read});
  receipts = a->group_receipts(*id);
  REQUIRE(receipts.ok());
  REQUIRE(receipts->size() == 2);
  CHECK((*receipts)[1].member == "carol");
  CHECK((*receipts)[1].status == message_status::read);
  auto list = c->groups();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].id == g->id);
  CHECK((*list)[0].my_flags == (member_flags::send | member_flags::recv));
  // carol leaves: bob hears it, and she no longer sees the group.
  REQUIRE(c->leave_group(g->id).ok());
  REQUIRE(rb->wait([&] { return rb->group_events.size() >= 2; }));
  CHECK(rb->group_events[1].kind == group_event_kind::left);
  CHECK(c->group(g->id).error().code() == status_code::not_found);
  auto seen = a->group(g->id);
  REQUIRE(seen.ok());
  CHECK(seen->members.size() == 2);
  // Offline, group calls say so at once.
  c->stop();
  auto off = c->groups();
  CHECK(off.error().code() == status_code::unavailable);
  CHECK(off.error().message().find("online") != std::string::npos);
}

TEST_CASE("presence through the SDK: subscriptions and typing, in order with "
          "messages") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  REQUIRE(a->subscribe_presence({"bob"}).ok());
  REQUIRE(ra->wait([&] { return ra->presences.size() == 1; }));
  CHECK(ra->presences[0].peer == "bob");
  CHECK(ra->presences[0].kind == presence_kind::offline);
  auto b = f.online(f.opts("bob"), rb);
  REQUIRE(ra->wait([&] { return ra->presences.size() == 2; }));
  CHECK(ra->presences[1].kind == presence_kind::online);
  // A message, then typing: alice hears them in that order.
  REQUIRE(b->send("alice", "hi").ok());
  REQUIRE(b->send_presence("alice", presence_kind::typing).ok());
  REQUIRE(ra->wait([&] { return ra->presences.size() == 3; }));
  CHECK(ra->order == std::vector<std::string>{"presence offline",
                                              "presence online", "message hi",
                                              "presence typing"});
  CHECK(ra->presences[2].peer == "bob");
  // The subscription survives a reconnect (subscribed again at login).
  REQUIRE(a->reconnect().ok());
  REQUIRE(ra->wait([&] {
    return ra->presences.size() == 4 &&
           ra->presences[3].kind == presence_kind::online;
  }));
  b->stop();
  REQUIRE(ra->wait([&] { return ra->presences.size() == 5; }));
  CHECK(ra->presences[4].kind == presence_kind::offline);
  // Presence is never queued: offline, it fails at once and says so.
  auto off = b->send_presence("alice", presence_kind::typing);
  CHECK(off.code() == status_code::unavailable);
  CHECK(b->send_presence("alice", presence_kind::offline).code() ==
        status_code::invalid_argument);
}

TEST_CASE("edits and retractions through the SDK reach every device, once") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto ra2 = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice", f.dir.path() + "/a1"), ra);
  auto a2 = f.online(f.opts("alice", f.dir.path() + "/a2"), ra2);
  auto b = f.online(f.opts("bob", f.dir.path() + "/b"), rb);
  auto id = a->send("bob", "helo");
  REQUIRE(id.ok());
  REQUIRE(ra->reached(*id, message_status::delivered));
  REQUIRE(ra2->wait([&] { return !ra2->messages.empty(); }));
  REQUIRE(a->edit(*id, "hello").ok());
  // The editing device changed at once; bob and alice's other device hear.
  CHECK(a->get(*id)->payload == "hello");
  REQUIRE(rb->wait([&] { return rb->changes.size() == 1; }));
  CHECK(rb->changes[0].payload == "hello");
  CHECK((rb->changes[0].flags & flags::edited) != 0);
  CHECK(b->get(rb->messages[0].id)->payload == "hello");
  REQUIRE(ra2->wait([&] { return ra2->changes.size() == 1; }));
  CHECK(ra2->changes[0].payload == "hello");
  // Retraction: the payload is gone everywhere.
  REQUIRE(a->retract(*id).ok());
  REQUIRE(rb->wait([&] { return rb->changes.size() == 2; }));
  CHECK(rb->changes[1].payload.empty());
  CHECK((rb->changes[1].flags & flags::retracted) != 0);
  CHECK(b->get(rb->messages[0].id)->payload.empty());
  // Retracted: no more changes, and nothing to forward.
  CHECK(a->edit(*id, "again").code() == status_code::failed_precondition);
  CHECK(b->forward(rb->messages[0].id, "carol").error().code() ==
        status_code::failed_precondition);
  // Only the sending device changes a message; only once the server has
  // it.
  auto id2 = a->send("bob", "second");
  REQUIRE(id2.ok());
  REQUIRE(ra->reached(*id2, message_status::delivered));
  REQUIRE(ra2->wait([&] { return ra2->messages.size() == 2; }));
  auto other = a2->edit(ra2->messages[1].id, "x");
  CHECK(other.code() == status_code::failed_precondition);
  CHECK(other.message().find("this device") != std::string::npos);
  // Past the retraction window (3600 s by default): refused, saying so.
  *f.skew_ms += 3601 * 1000;
  auto late = a->retract(*id2);
  CHECK(late.code() == status_code::failed_precondition);
  CHECK(late.message().find("3600 s") != std::string::npos);
  CHECK(b->get(rb->messages[1].id)->payload == "second");
  // Every change was told once on each device (ra: its own two).
  CHECK(ra->changes.size() == 2);
  CHECK(rb->changes.size() == 2);
  // A forwarded copy says so.
  auto fw = b->forward(rb->messages[1].id, "carol");
  REQUIRE(fw.ok());
  CHECK((b->get(*fw)->flags & flags::forwarded) != 0);
  CHECK(b->get(*fw)->payload == "second");
}

namespace {

/// The conversation with `peer` in `c`'s database, oldest first, as
/// "sender: payload" lines.
std::vector<std::string> conversation_of(client& c, const std::string& peer) {
  std::vector<std::string> out;
  auto rs = c.read_session_for(peer, true);
  for (;;) {
    auto page = rs->read(7);
    REQUIRE(page.ok());
    if (page->empty())
      return out;
    for (auto& m : *page)
      out.push_back(m.sender + ": " + m.payload);
  }
}

} // namespace

TEST_CASE("a new device starts where the user's least advanced device "
          "is: what it is streamed and what it syncs make the conversation "
          "once, in order") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice"), ra);
  // bob's first device (raw) stores all ten and acks only the first five.
  auto b1 =
    test::test_client::connect(f.sopts.port, f.sopts.data_dir + "/cert.pem");
  b1->login("demo", f.tokens["bob"], "b1");
  std::vector<std::string> expected;
  for (int i = 1; i <= 10; ++i) {
    expected.push_back("alice: m" + std::to_string(i));
    REQUIRE(a->send("bob", "m" + std::to_string(i)).ok());
  }
  uint64_t fifth = 0;
  for (int i = 1; i <= 10; ++i) {
    auto m = b1->expect<codec::message>();
    CHECK(m.payload == "m" + std::to_string(i));
    if (i == 5)
      fifth = m.seq;
  }
  b1->send(codec::ack{fifth});
  b1->send(codec::goodbye{});
  REQUIRE(b1->wait_closed());
  // Its session handed the ack to the storage before it ended; an admin
  // call commits what the storage holds.
  REQUIRE(f.srv->user_add("demo", "zed").ok());
  auto rb = std::make_shared<recorder>();
  auto b2 = f.online(f.opts("bob", f.dir.path() + "/b2"), rb);
  REQUIRE(rb->wait([&] { return rb->messages.size() == 5; }));
  CHECK(rb->messages.front().payload == "m6");
  auto n = b2->sync("alice", 100);
  REQUIRE_MESSAGE(n.ok(), n.error().to_string());
  CHECK(*n == 5);
  CHECK(conversation_of(*b2, "alice") == expected);
  REQUIRE(a->send("bob", "live").ok());
  REQUIRE(rb->wait([&] { return rb->messages.size() == 6; }));
  expected.push_back("alice: live");
  CHECK(conversation_of(*b2, "alice") == expected);
  CHECK(rb->message_count() == 6); // none twice
}

TEST_CASE("history sync into an empty database: the same messages, in the "
          "same order") {
  fixture f;
  auto ra = std::make_shared<recorder>();
  auto rb = std::make_shared<recorder>();
  auto a = f.online(f.opts("alice", f.dir.path() + "/a"), ra);
  auto b = f.online(f.opts("bob", f.dir.path() + "/b1"), rb);
  uint64_t last = 0;
  for (int i = 1; i <= 30; ++i) {
    auto& from = i % 3 == 0 ? b : a;
    auto id = from->send(i % 3 == 0 ? "alice" : "bob", "m" + std::to_string(i));
    REQUIRE(id.ok());
    last = *id;
    // One at a time: both databases then hold the one server order.
    REQUIRE((i % 3 == 0 ? rb : ra)->reached(last, message_status::delivered));
  }
  REQUIRE(a->send("carol", "not this conversation").ok());
  auto expected = conversation_of(*b, "alice");
  REQUIRE(expected.size() == 30);
  // A new device starts at the least advanced cursor of the user's devices,
  // and b1 acks its own messages' status records lazily: stopped, it acks
  // them all.
  f.stop_committed(*b, "bob", *a, *ra);
  // So bob's new device starts at the head of his log: it holds nothing.
  auto rb2 = std::make_shared<recorder>();
  auto b2 = f.online(f.opts("bob", f.dir.path() + "/b2"), rb2);
  CHECK(conversation_of(*b2, "alice").empty());
  auto n = b2->sync("alice", 12);
  REQUIRE_MESSAGE(n.ok(), n.error().to_string());
  CHECK(*n == 12);
  n = b2->sync("alice", 100);
  REQUIRE(n.ok());
  CHECK(*n == 18);
  CHECK(*b2->sync("alice", 100) == 0); // nothing older is left
  CHECK(conversation_of(*b2, "alice") == expected);
  REQUIRE(rb2->wait([&] { return rb2->syncs.size() == 3; }));
  CHECK(rb2->syncs == std::vector<size_t>{12, 18, 0});
  // Synced history is not unread, and a live message still lands after it.
  auto s = b2->summary();
  REQUIRE(s.ok());
  REQUIRE(s->size() == 1);
  CHECK((*s)[0].unread == 0);
  REQUIRE(a->send("bob", "live").ok());
  REQUIRE(rb2->wait([&] { return rb2->messages.size() == 1; }));
  auto now = conversation_of(*b2, "alice");
  CHECK(now.back() == "alice: live");
  // Offline, sync says so.
  b2->stop();
  CHECK(b2->sync("alice").error().code() == status_code::unavailable);
}
