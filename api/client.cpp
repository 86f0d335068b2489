// libparley's facade: runtime, client, read_session.

#include <parley/client.hpp>

#include "actors/client/callback_pool.hpp"
#include "actors/client/client_actor.hpp"
#include "actors/client/connector.hpp"
#include "actors/common/io_scheduler.hpp"
#include "actors/tls/tls.hpp"
#include "api/runtime_impl.hpp"
#include "codec/protocol.hpp"
#include "store/client_store.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

namespace parley {

namespace fs = std::filesystem;

// -- names
// ---------------------------------------------------------------------

const char* to_string(connection_status s) noexcept {
  switch (s) {
  case connection_status::unknown:
    return "unknown";
  case connection_status::online:
    return "online";
  case connection_status::offline:
    return "offline";
  case connection_status::signout:
    return "signout";
  case connection_status::authfail:
    return "authfail";
  case connection_status::stopped:
    return "stopped";
  case connection_status::connecting:
    return "connecting";
  case connection_status::connect_failure:
    return "connect_failure";
  case connection_status::no_network:
    return "no_network";
  case connection_status::shutdown:
    return "shutdown";
  }
  return "unknown";
}

const char* to_string(message_status s) noexcept {
  // The public numbers are the protocol's (a subset): one table of names.
  static_assert(static_cast<int>(message_status::read) ==
                static_cast<int>(codec::message_status::read));
  static_assert(static_cast<int>(message_status::not_member) ==
                static_cast<int>(codec::message_status::not_member));
  return codec::to_string(static_cast<codec::message_status>(s)).data();
}

const char* to_string(presence_kind k) noexcept {
  static_assert(static_cast<int>(presence_kind::left) ==
                static_cast<int>(codec::presence_kind::left));
  switch (k) {
  case presence_kind::online:
    return "online";
  case presence_kind::typing:
    return "typing";
  case presence_kind::typing_cleared:
    return "typing_cleared";
  case presence_kind::offline:
    return "offline";
  case presence_kind::joined:
    return "joined";
  case presence_kind::left:
    return "left";
  }
  return "unknown";
}

// -- runtime
// ---------------------------------------------------------------------

runtime::runtime(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

runtime::~runtime() {
  // Order: no new connects, then the actors (their system), then callbacks.
  impl_->connector.reset();
  impl_->owned.reset(); // waits for our actors (a host's system: its own)
  impl_->callbacks.reset();
}

result<std::shared_ptr<runtime>> runtime::create(const runtime_options& o) {
  auto p = std::make_unique<impl>();
  auto threads = o.threads != 0
                   ? o.threads
                   : std::max(2u, std::thread::hardware_concurrency());
  p->cfg.set("scheduler.max-threads", static_cast<size_t>(threads));
  // The workers poll the sockets themselves (io_scheduler.hpp) and sleep in
  // epoll_wait when idle: no poller thread and no spinning.
  net::load_io_scheduler(p->cfg);
  p->cfg.set("logger.verbosity", caf::atom("quiet"));
  p->cfg.load<caf::io::middleman>();
  p->owned = std::make_unique<caf::actor_system>(p->cfg);
  p->sys = p->owned.get();
  p->poller = net::io_poller_of(*p->sys);
  p->io = p->poller.get();
  if (p->io == nullptr)
    return status{status_code::io_error,
                  "the runtime could not create its epoll instance (too many "
                  "open files?)"};
  if (o.callback_threads > 0)
    p->callbacks = std::make_unique<net::callback_pool>(o.callback_threads);
  p->connector = std::make_unique<net::connector>();
  return std::shared_ptr<runtime>(new runtime(std::move(p)));
}

result<std::shared_ptr<runtime>> interop_runtime(caf::actor_system& sys,
                                                 const runtime_options& o) {
  if (!sys.has_middleman())
    return status{status_code::failed_precondition,
                  "the host's actor system has no middleman: call "
                  "parley::interop::prepare(cfg) before creating it"};
  auto p = std::make_unique<runtime::impl>();
  p->sys = &sys;
  if (o.callback_threads > 0)
    p->callbacks = std::make_unique<net::callback_pool>(o.callback_threads);
  p->connector = std::make_unique<net::connector>();
  auto poll = net::poller::start("parley.io");
  if (!poll)
    return poll.error();
  p->poller = std::move(*poll);
  p->io = p->poller.get();
  return std::shared_ptr<runtime>(new runtime(std::move(p)));
}

std::shared_ptr<runtime> runtime::default_runtime() {
  static std::mutex mtx;
  static std::weak_ptr<runtime> instance;
  std::lock_guard<std::mutex> guard{mtx};
  auto rt = instance.lock();
  if (!rt) {
    auto made = create();
    if (!made)
      return nullptr;
    rt = *made;
    instance = rt;
  }
  return rt;
}

// -- client
// ----------------------------------------------------------------------

struct client::impl {
  std::shared_ptr<runtime> rt;
  std::shared_ptr<cli::client_context> ctx;
  caf::actor actor;

  ~impl() {
    if (actor) {
      call(cli::stop_atom::value);
      caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
      actor = nullptr;
    }
    if (ctx && ctx->events) {
      ctx->events->close();
    } else if (ctx) { // inline callbacks: wait for a running one, then none
      std::lock_guard<std::recursive_mutex> guard{ctx->inline_mtx};
      ctx->closed = true;
    }
  }

  /// Refuses a call that waits for the actor from an inline callback.
  static bool in_inline_callback() {
    return cli::inline_callbacks > 0;
  }

  static constexpr const char* inline_refusal =
    "called from a listener callback that runs inline on the client's "
    "actor thread (runtime_options::callback_threads = 0), which cannot "
    "wait for that actor: only send(), send_to_group(), get() and reads of "
    "the local database work there; call it from another thread, or give "
    "the runtime callback threads";

  /// Sends a call with a reply slot and waits for the answer.
  template<class... Ts>
  cli::call_result call(Ts&&... xs) {
    auto slot = std::make_shared<std::promise<cli::call_result>>();
    auto answer = slot->get_future();
    if (in_inline_callback())
      return {0, inline_refusal, status_code::failed_precondition};
    caf::anon_send(actor, std::forward<Ts>(xs)..., std::move(slot));
    if (answer.wait_for(ctx->opts.call_timeout) != std::future_status::ready)
      return {0, "the client did not answer within the call timeout",
              status_code::timeout};
    try {
      return answer.get();
    } catch (const std::future_error&) {
      return {0, "the client is gone (stopped or destroyed)",
              status_code::cancelled};
    }
  }

  /// OK, or the call's error; `fallback` classifies an error the actor
  /// did not classify.
  static status as_status(const cli::call_result& r, status_code fallback) {
    if (r.error.empty())
      return {};
    return status{r.code != status_code::ok ? r.code : fallback, r.error};
  }

  /// Completes an outgoing message (its conversation set), stores it and
  /// hands it to the actor. Stored here, on the caller's thread (the store
  /// serializes writers), so the call returns without a round trip to the
  /// client's actor; the actor sends it when online (or with the outbox at
  /// the next login).
  result<uint64_t> send_stored(store::client_message m,
                               const std::string& payload,
                               const send_options& o) {
    m.sender = ctx->address();
    m.outgoing = true;
    m.kind = o.kind;
    m.flags = o.flags;
    m.expiry_s = o.expiry_s;
    m.in_reply_to = o.in_reply_to;
    m.ts_ms = cli::wall_ms();
    m.status = static_cast<uint8_t>(codec::message_status::outbox);
    m.payload = payload;
    if (auto s = ctx->db->add_new_outgoing(m, m.ts_ms); !s)
      return s.annotate("storing the message in the local database");
    auto id = m.id;
    caf::anon_send(actor, cli::send_atom::value, std::move(m));
    return id;
  }

  /// Sends a request frame to the server through the actor and waits for
  /// the answer frame (or why there is none).
  result<codec::frame> request(codec::frame f) {
    if (in_inline_callback())
      return status{status_code::failed_precondition, inline_refusal};
    cli::server_request r;
    r.frame = std::move(f);
    r.slot = std::make_shared<std::promise<cli::request_result>>();
    auto answer = r.slot->get_future();
    caf::anon_send(actor, cli::request_atom::value, std::move(r));
    if (answer.wait_for(ctx->opts.call_timeout) != std::future_status::ready)
      return status{status_code::timeout,
                    "the server did not answer within the call timeout"};
    try {
      auto res = answer.get();
      if (!res.error)
        return res.error;
      return std::move(res.answer);
    } catch (const std::future_error&) {
      return status{status_code::cancelled,
                    "the client is gone (stopped or destroyed)"};
    }
  }

  /// sync() and sync_group(): pages of the server's log into the local
  /// database; the position reached is kept in the key/value store.
  result<size_t> sync(const std::string& peer, uint32_t group_id,
                      size_t count) {
    if (in_inline_callback()) // it waits for the server (and emits on_sync)
      return status{status_code::failed_precondition, inline_refusal};
    if (group_id == 0 && (peer.empty() || peer.size() > codec::max_address))
      return status{status_code::invalid_argument,
                    "sync needs a peer address of 1 to " +
                      std::to_string(codec::max_address) + " bytes"};
    if (ctx->status.load() != static_cast<uint8_t>(connection_status::online))
      return status{status_code::unavailable,
                    "the client is not online: sync needs the server; "
                    "start() it and wait for ONLINE"};
    auto key = group_id != 0 ? "parley.sync.g" + std::to_string(group_id)
                             : "parley.sync.p" + peer;
    auto pos = ctx->db->kv_get(key);
    if (!pos)
      return pos.error();
    // From where this device started (history is what the stream did not
    // bring), then from where the last page ended.
    uint64_t before = 0;
    if (auto start = ctx->db->kv_get(cli::sync_start_key); start.ok() && *start)
      before = std::strtoull((*start)->c_str(), nullptr, 10);
    if (*pos) {
      if (**pos == "complete") {
        ctx->emit([peer, group_id](listener& l) {
          l.on_sync(peer, group_id, 0);
        });
        return size_t{0};
      }
      before = std::strtoull((*pos)->c_str(), nullptr, 10);
    }
    size_t added = 0;
    for (int pages = 0; added < count && pages < 100; ++pages) {
      codec::sync_request req;
      req.peer = group_id != 0 ? std::string{} : peer;
      req.group_id = group_id;
      req.before_seq = before;
      req.count = static_cast<uint32_t>(std::min<size_t>(count - added, 500));
      auto answer = request(std::move(req));
      if (!answer)
        return answer.error();
      if (auto* rep = std::get_if<codec::reply>(&*answer))
        return status{rep->code == status_code::ok ? status_code::internal
                                                   : rep->code,
                      rep->text};
      auto* page = std::get_if<codec::sync_page>(&*answer);
      if (page == nullptr)
        return status{status_code::protocol_error,
                      "the server answered a sync with an unexpected frame"};
      for (auto& wm : page->messages) {
        if (wm.outgoing && wm.mid != 0) {
          // Sent from this device and still held under its mid?
          auto own = ctx->db->get(wm.mid);
          if (own.ok() && *own && (*own)->outgoing && (*own)->id == wm.mid)
            continue;
        }
        auto m = cli::from_wire(wm);
        m.id = store::history_id(m.ts_ms, m.seq);
        if (!m.outgoing) {
          m.read = true; // history: not counted as unread
          m.status = static_cast<uint8_t>(codec::message_status::received_read);
        }
        auto fresh = ctx->db->add_incoming(m);
        if (!fresh && fresh.error().code() != status_code::already_exists)
          return fresh.error().annotate("storing synced history");
        if (fresh && *fresh)
          ++added;
      }
      before = page->resume_before;
      auto mark = page->complete ? std::string{"complete"}
                                 : std::to_string(before);
      if (auto s = ctx->db->kv_put(key, mark); !s)
        return s;
      if (page->complete)
        break;
    }
    ctx->emit([peer, group_id, added](listener& l) {
      l.on_sync(peer, group_id, added);
    });
    return added;
  }

  /// edit() and retract(): checked here, done by the server, applied to
  /// the local database once the server said yes.
  status change(uint64_t id, codec::update_kind kind,
                const std::string& payload) {
    bool retract = kind == codec::update_kind::retract;
    const char* verb = retract ? "retracted" : "edited";
    auto m = ctx->db->get(id);
    if (!m)
      return m.error();
    if (!*m)
      return {status_code::not_found,
              "there is no message " + std::to_string(id) +
                " in the local database"};
    auto& msg = **m;
    if (!msg.outgoing || msg.id != msg.mid)
      return {status_code::failed_precondition,
              std::string{"only a message sent from this device can be "} +
                verb};
    auto st = static_cast<codec::message_status>(msg.status);
    if (st == codec::message_status::outbox)
      return {status_code::failed_precondition,
              std::string{"the message is not SENT yet: it can be "} + verb +
                " once the server has it (or remove() it instead)"};
    if (codec::is_failure(st))
      return {status_code::failed_precondition,
              "the message failed (" + std::string{codec::to_string(st)} +
                "): the server never stored it, so nobody has it to change"};
    if ((msg.flags & codec::message_flags::retracted) != 0)
      return {status_code::failed_precondition,
              "the message was retracted already: it cannot change any more"};
    codec::frame f;
    if (retract)
      f = codec::retract{0, msg.mid};
    else
      f = codec::edit{0, msg.mid, payload};
    if (auto s = as_status(request(std::move(f))); !s)
      return s;
    return cli::apply_change(*ctx, id, kind, payload);
  }

  /// OK for a reply frame with code ok; its status otherwise.
  static status as_status(const result<codec::frame>& r) {
    if (!r)
      return r.error();
    if (auto* rep = std::get_if<codec::reply>(&*r))
      return rep->code == status_code::ok ? status{}
                                          : status{rep->code, rep->text};
    return status{status_code::protocol_error,
                  "the server answered with an unexpected frame"};
  }

  static group_info to_public(const codec::group_info& g) {
    group_info out;
    out.id = g.group_id;
    out.name = g.name;
    out.flags = g.flags;
    out.owner = g.owner;
    for (auto& m : g.members)
      out.members.push_back(group_member{m.address, m.flags});
    return out;
  }

  result<group_info> group_answer(const result<codec::frame>& r) {
    if (!r)
      return r.error();
    if (auto* g = std::get_if<codec::group_info>(&*r)) {
      auto out = to_public(*g);
      auto me = ctx->address();
      for (auto& m : out.members)
        if (m.address == me)
          out.my_flags = m.flags;
      return out;
    }
    return as_status(r);
  }
};

client::client(std::shared_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

client::~client() = default;

result<std::unique_ptr<client>> client::create(const client_options& opts,
                                               std::shared_ptr<runtime> rt) {
  if (!rt)
    return status{status_code::internal, "no runtime"};
  if (opts.app_id.empty() || opts.token.empty())
    return status{status_code::invalid_argument,
                  "set the app id and the user's access token (from "
                  "'parley admin user add APP USER')"};
  auto p = std::make_shared<impl>();
  p->rt = rt;
  auto ctx = std::make_shared<cli::client_context>();
  ctx->opts = opts;
  tls::client_options to;
  to.ca_file = opts.ca_file;
  to.pinned_fingerprint = opts.fingerprint;
  auto tctx = rt->internals().tls_context(to);
  if (!tctx)
    return tctx.error();
  ctx->tls = *tctx;
  if (opts.database.empty()) {
    store::memory_options mo;
    mo.max_messages = opts.memory_messages;
    mo.max_idle_conversations = opts.memory_idle_conversations;
    ctx->db = store::client_store::open_memory(mo);
  } else {
    store::env_options eo;
    eo.map_size = 64ull << 20;
    auto db = store::client_store::open(opts.database, eo);
    if (!db)
      return db.error().annotate("opening the client database '" +
                                 opts.database + "'");
    ctx->db = std::move(*db);
  }
  if (!opts.device_id.empty()) {
    ctx->device = opts.device_id;
  } else {
    auto dev = ctx->db->device_id();
    if (!dev)
      return dev.error();
    ctx->device = *dev;
  }
  auto& rti = rt->internals();
  ctx->connector = rti.connector.get();
  ctx->poller = rti.io;
  if (rti.callbacks)
    ctx->events = rti.callbacks->make_strand();
  p->ctx = ctx;
  p->actor = cli::make_client_actor(*rti.sys, ctx);
  return std::unique_ptr<client>(new client(std::move(p)));
}

void client::add_listener(std::shared_ptr<listener> l) {
  auto& ctx = *impl_->ctx;
  std::lock_guard<std::mutex> guard{ctx.listeners_mtx};
  auto& v = *ctx.listeners;
  if (std::find(v.begin(), v.end(), l) != v.end())
    return;
  auto next = std::make_shared<cli::client_context::listener_list>(v);
  next->push_back(std::move(l));
  ctx.listeners = std::move(next);
}

void client::remove_listener(const std::shared_ptr<listener>& l) {
  auto& ctx = *impl_->ctx;
  std::lock_guard<std::mutex> guard{ctx.listeners_mtx};
  auto next =
    std::make_shared<cli::client_context::listener_list>(*ctx.listeners);
  next->erase(std::remove(next->begin(), next->end(), l), next->end());
  ctx.listeners = std::move(next);
}

status client::start() {
  auto r = impl_->call(cli::start_atom::value);
  return impl::as_status(r, status_code::unavailable);
}

void client::stop() {
  if (impl::in_inline_callback()) {
    // Cannot wait for the actor here: it stops once the callback returns.
    caf::anon_send(impl_->actor, cli::stop_atom::value,
                   std::make_shared<std::promise<cli::call_result>>());
    return;
  }
  impl_->call(cli::stop_atom::value);
}

status client::reconnect() {
  auto r = impl_->call(cli::reconnect_atom::value);
  return impl::as_status(r, status_code::internal);
}

connection_status client::connection() const {
  return static_cast<connection_status>(impl_->ctx->status.load());
}

bool client::tls_resumed() const {
  return impl_->ctx->resumed.load(std::memory_order_relaxed);
}

const std::string& client::device_id() const {
  return impl_->ctx->device;
}

result<uint64_t> client::send(const std::string& peer,
                              const std::string& payload,
                              const send_options& o) {
  if (peer.empty() || peer.size() > codec::max_address)
    return status{status_code::invalid_argument,
                  "a peer address has 1 to 64 bytes"};
  if (payload.size() > codec::max_payload)
    return status{status_code::invalid_argument,
                  "a payload has at most 256 KiB; send files in chunks"};
  store::client_message m;
  m.peer = peer;
  return impl_->send_stored(std::move(m), payload, o);
}

result<uint64_t> client::send_to_group(uint32_t group_id,
                                       const std::string& payload,
                                       const send_options& o) {
  if (group_id == 0)
    return status{status_code::invalid_argument,
                  "a group id is never 0: use the id create_group() or "
                  "groups() gave"};
  if (payload.size() > codec::max_payload)
    return status{status_code::invalid_argument,
                  "a payload has at most 256 KiB; send files in chunks"};
  store::client_message m;
  m.group_id = group_id;
  return impl_->send_stored(std::move(m), payload, o);
}

namespace {

std::vector<codec::member> to_wire(const std::vector<group_member>& v) {
  std::vector<codec::member> out;
  for (auto& m : v)
    out.push_back(codec::member{m.address, m.flags});
  return out;
}

} // namespace

result<group_info>
client::create_group(const std::string& name,
                     const std::vector<group_member>& members, uint32_t flags) {
  codec::group_create f;
  f.name = name;
  f.flags = flags;
  f.members = to_wire(members);
  return impl_->group_answer(impl_->request(std::move(f)));
}

status client::add_group_members(uint32_t group_id,
                                 const std::vector<group_member>& members) {
  codec::group_members f;
  f.group_id = group_id;
  f.op = codec::member_op::add;
  f.members = to_wire(members);
  return impl::as_status(impl_->request(std::move(f)));
}

status client::remove_group_members(uint32_t group_id,
                                    const std::vector<std::string>& addresses) {
  codec::group_members f;
  f.group_id = group_id;
  f.op = codec::member_op::remove;
  for (auto& a : addresses)
    f.members.push_back(codec::member{a, 0});
  return impl::as_status(impl_->request(std::move(f)));
}

status client::leave_group(uint32_t group_id) {
  codec::group_leave f;
  f.group_id = group_id;
  return impl::as_status(impl_->request(std::move(f)));
}

status client::delete_group(uint32_t group_id) {
  codec::group_delete f;
  f.group_id = group_id;
  return impl::as_status(impl_->request(std::move(f)));
}

status client::set_group(uint32_t group_id, const std::string& name,
                         uint32_t flags) {
  codec::group_set f;
  f.group_id = group_id;
  f.name = name;
  f.flags = flags;
  return impl::as_status(impl_->request(std::move(f)));
}

result<group_info> client::group(uint32_t group_id) {
  codec::group_get f;
  f.group_id = group_id;
  return impl_->group_answer(impl_->request(std::move(f)));
}

result<std::vector<group_info>> client::groups() {
  auto r = impl_->request(codec::group_list{});
  if (!r)
    return r.error();
  auto* page = std::get_if<codec::group_list_page>(&*r);
  if (page == nullptr)
    return impl::as_status(r);
  std::vector<group_info> out;
  for (auto& g : page->groups) {
    group_info i;
    i.id = g.group_id;
    i.name = g.name;
    i.flags = g.flags;
    i.my_flags = g.my_flags;
    out.push_back(std::move(i));
  }
  return out;
}

status client::resend(uint64_t id) {
  auto r = impl_->call(cli::resend_atom::value, id);
  return impl::as_status(r, status_code::internal);
}

status client::send_presence(const std::string& peer, presence_kind kind) {
  if (peer.empty() || peer.size() > codec::max_address)
    return {status_code::invalid_argument,
            "presence needs a peer address of 1 to " +
              std::to_string(codec::max_address) + " bytes"};
  if (kind == presence_kind::offline)
    return {status_code::invalid_argument,
            "offline presence is sent by the server when a user's last "
            "device goes: send typing, typing_cleared, joined, left or "
            "online"};
  auto r = impl_->call(cli::presence_atom::value, peer, uint32_t{0},
                       static_cast<uint8_t>(kind));
  return impl::as_status(r, status_code::internal);
}

status client::send_group_presence(uint32_t group_id, presence_kind kind) {
  if (group_id == 0)
    return {status_code::invalid_argument, "group presence needs a group id"};
  if (kind == presence_kind::offline)
    return {status_code::invalid_argument,
            "offline presence is sent by the server when a user's last "
            "device goes: send typing, typing_cleared, joined, left or "
            "online"};
  auto r = impl_->call(cli::presence_atom::value, std::string{}, group_id,
                       static_cast<uint8_t>(kind));
  return impl::as_status(r, status_code::internal);
}

status client::subscribe_presence(const std::vector<std::string>& users) {
  for (auto& u : users)
    if (u.empty() || u.size() > codec::max_address)
      return {status_code::invalid_argument,
              "a user address is 1 to " + std::to_string(codec::max_address) +
                " bytes: '" + u + "' is not"};
  auto r = impl_->call(cli::subscribe_atom::value, true, users);
  return impl::as_status(r, status_code::internal);
}

status client::unsubscribe_presence(const std::vector<std::string>& users) {
  auto r = impl_->call(cli::subscribe_atom::value, false, users);
  return impl::as_status(r, status_code::internal);
}

namespace {

/// The options of a forwarded copy of `m`, or why it cannot be forwarded.
result<send_options> forward_options(const result<message>& m) {
  if (!m)
    return m.error();
  if ((m->flags & flags::retracted) != 0)
    return status{status_code::failed_precondition,
                  "the message was retracted by its sender: there is "
                  "nothing to forward"};
  send_options o;
  o.flags = static_cast<uint16_t>(
    (m->flags & (flags::delivery_receipt | flags::read_receipt)) |
    flags::forwarded);
  o.kind = m->kind;
  return o;
}

} // namespace

result<uint64_t> client::forward(uint64_t id, const std::string& peer) {
  auto m = get(id);
  auto o = forward_options(m);
  if (!o)
    return o.error();
  return send(peer, m->payload, *o);
}

result<uint64_t> client::forward_to_group(uint64_t id, uint32_t group_id) {
  auto m = get(id);
  auto o = forward_options(m);
  if (!o)
    return o.error();
  return send_to_group(group_id, m->payload, *o);
}

result<size_t> client::sync(const std::string& peer, size_t count) {
  return impl_->sync(peer, 0, count);
}

result<size_t> client::sync_group(uint32_t group_id, size_t count) {
  if (group_id == 0)
    return status{status_code::invalid_argument, "sync needs a group id"};
  return impl_->sync({}, group_id, count);
}

status client::edit(uint64_t id, const std::string& payload) {
  if (payload.size() > codec::max_payload)
    return {status_code::invalid_argument,
            "the payload is " + std::to_string(payload.size()) +
              " bytes, more than the limit of " +
              std::to_string(codec::max_payload)};
  return impl_->change(id, codec::update_kind::edit, payload);
}

status client::retract(uint64_t id) {
  return impl_->change(id, codec::update_kind::retract, {});
}

status client::remove(uint64_t id) {
  auto r = impl_->call(cli::remove_atom::value, id);
  return impl::as_status(r, status_code::not_found);
}

status client::mark_read(const std::string& peer, uint64_t up_to) {
  auto r = impl_->call(cli::mark_atom::value, peer, uint32_t{0}, up_to);
  return impl::as_status(r, status_code::internal);
}

status client::mark_group_read(uint32_t group_id, uint64_t up_to) {
  if (group_id == 0)
    return {status_code::invalid_argument, "mark_group_read needs a group id"};
  auto r = impl_->call(cli::mark_atom::value, std::string{}, group_id, up_to);
  return impl::as_status(r, status_code::internal);
}

result<std::vector<member_receipt>> client::group_receipts(uint64_t id) {
  auto rs = impl_->ctx->db->member_receipts(id);
  if (!rs)
    return rs.error();
  std::vector<member_receipt> out;
  for (auto& r : *rs)
    out.push_back(member_receipt{
      r.member, static_cast<message_status>(r.status), r.ts_ms});
  return out;
}

result<message> client::get(uint64_t id) {
  auto m = impl_->ctx->db->get(id);
  if (!m)
    return m.error();
  if (!*m)
    return status{status_code::not_found,
                  "no message " + std::to_string(id) + " in the database"};
  return cli::to_public(**m);
}

result<std::vector<conversation>> client::summary() {
  auto s = impl_->ctx->db->summary();
  if (!s)
    return s.error();
  std::vector<conversation> out;
  for (auto& c : *s)
    out.push_back(
      conversation{c.peer, c.group_id, cli::to_public(c.last), c.unread});
  return out;
}

// -- read sessions
// -------------------------------------------------------------------

struct read_session::impl {
  std::shared_ptr<store::client_store> db;
  std::string peer;
  store::read_order order;
  uint64_t from = 0;
  bool done = false;
};

read_session::read_session(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

read_session::~read_session() = default;

result<std::vector<message>> read_session::read(size_t count) {
  std::vector<message> out;
  if (impl_->done || count == 0)
    return out;
  auto page = impl_->db->read(impl_->peer, 0, impl_->from, count, impl_->order);
  if (!page)
    return page.error();
  if (page->size() < count)
    impl_->done = true;
  for (auto& m : *page)
    out.push_back(cli::to_public(m));
  if (!page->empty())
    impl_->from = page->back().id;
  return out;
}

std::unique_ptr<read_session> client::read_session_for(const std::string& peer,
                                                       bool oldest_first) {
  auto p = std::make_unique<read_session::impl>();
  p->db = impl_->ctx->db;
  p->peer = peer;
  p->order = oldest_first ? store::read_order::oldest_first
                          : store::read_order::newest_first;
  return std::make_unique<read_session>(std::move(p));
}

} // namespace parley
