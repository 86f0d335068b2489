#pragma once

// The client actor: one per client, on the runtime's worker pool. It owns
// the connection's TLS stream and framing, the login, the outbox, acks and
// statuses, and is the only writer of the local database; a byte pump
// broker moves its bytes and the connector makes its TCP connections.
// Events go to the client's strand, which runs the listeners.
//
// Protocol (from the facade). Each call carries a reply slot (a promise the
// facade waits on) instead of a request: the facade may be called from any
// thread, also from inside callbacks, and needs no actor of its own.
//   (start, slot)                    connect and log in, keep reconnecting
//   (stop, slot)                     goodbye and close; answers when done
//   (send, message)                  the facade stored it (OUTBOX) on its
//                                    own thread; sends it if online and not
//                                    sent on this connection already
//   (resend, id, slot), (remove, id, slot)
//   (markread, peer, group, up_to, slot)  mark read locally + READ to the
//                                    senders (peer, or the group's)
//   (presence, peer, group, kind, slot)  presence now, or unavailable
//   (subscribe, on, users, slot)     (un)watch users' presence; the set is
//                                    sent again at each login
// A slot answers {id, error}; error empty on success.
// (from the connector): (connected, fd) | (failed, reason, code)
// (from the poller, via its channel): (io) the socket is readable/writable
// (to itself): (tick, generation) reconnect timer, (ping) keepalive

#include "actors/client/callback_pool.hpp"
#include "actors/client/connector.hpp"
#include "actors/common/poller.hpp"
#include "actors/tls/tls.hpp"
#include "codec/frames.hpp"
#include "store/client_store.hpp"

#include <parley/client.hpp>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace parley::cli {

/// The key/value entry with the log position where this database's device
/// started (its first login_ok.cursor + 1): sync() pages history below it.
inline constexpr const char* sync_start_key = "parley.sync.start";

using start_atom = caf::atom_constant<caf::atom("start")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using send_atom = caf::atom_constant<caf::atom("send")>;
using resend_atom = caf::atom_constant<caf::atom("resend")>;
using remove_atom = caf::atom_constant<caf::atom("remove")>;
using mark_atom = caf::atom_constant<caf::atom("markread")>;
using connected_atom = caf::atom_constant<caf::atom("connected")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using request_atom = caf::atom_constant<caf::atom("request")>;
using presence_atom = caf::atom_constant<caf::atom("presence")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;

/// The answer to a facade call.
struct call_result {
  uint64_t id = 0;
  std::string error;                  ///< Empty on success.
  status_code code = status_code::ok; ///< The error's class, when known.
};

/// Where the actor puts the answer; the facade waits on its future. When
/// the actor is gone the message (and the promise) is destroyed, and the
/// facade sees a broken promise instead of waiting forever.
using reply_slot = std::shared_ptr<std::promise<call_result>>;

/// The answer to a request the facade sent to the server (group calls):
/// the answer frame (group_info, group_list_page or reply), or an error
/// when there was none (offline, connection lost).
struct request_result {
  status error;
  codec::frame answer;
};

/// A request frame (its `req` filled in by the actor) and where its answer
/// goes.
struct server_request {
  codec::frame frame;
  std::shared_ptr<std::promise<request_result>> slot;
};

/// Depth of inline listener callbacks running on this thread
/// (runtime_options::callback_threads == 0): the facade refuses calls that
/// would wait for a client actor from inside one (the actor would be
/// waiting for itself).
inline thread_local int inline_callbacks = 0;

/// What the facade and the actor share.
struct client_context {
  client_options opts;
  std::shared_ptr<tls::context> tls;
  std::shared_ptr<store::client_store> db;
  std::string device;
  net::connector* connector = nullptr;
  net::poller* poller = nullptr;
  /// The client's strand on the callback pool; null when callbacks run
  /// inline (runtime_options::callback_threads == 0).
  std::shared_ptr<net::strand> events;
  /// Inline callbacks: held while one runs, so a client's callbacks never
  /// overlap (recursive: a callback's own facade calls may emit).
  std::recursive_mutex inline_mtx;
  bool closed = false; ///< Inline: the client is destroyed (inline_mtx).
  using listener_list = std::vector<std::shared_ptr<listener>>;
  std::mutex listeners_mtx;
  /// Copied on write (add_listener, remove_listener): an event takes the
  /// list with one reference count, not a copy of the vector.
  std::shared_ptr<const listener_list> listeners =
    std::make_shared<const listener_list>();
  std::atomic<uint8_t> status{0};
  /// The current connection's TLS handshake resumed a ticket (tls_resumed).
  std::atomic<bool> resumed{false};

  /// This user's address, as the server said at login (empty before).
  std::string address() {
    std::lock_guard<std::mutex> guard{address_mtx};
    return address_;
  }
  void set_address(std::string a) {
    std::lock_guard<std::mutex> guard{address_mtx};
    address_ = std::move(a);
  }
  std::mutex address_mtx;
  std::string address_;

  /// Runs `f` on every listener, on the client's strand (or at once, on
  /// this thread, when callbacks run inline).
  template<class F>
  void emit(F f) {
    if (!events) {
      std::lock_guard<std::recursive_mutex> guard{inline_mtx};
      if (closed)
        return;
      std::shared_ptr<const listener_list> snapshot;
      {
        std::lock_guard<std::mutex> g{listeners_mtx};
        snapshot = listeners;
      }
      struct depth { // exception-safe: a throwing listener undoes it too
        depth() { ++inline_callbacks; }
        ~depth() { --inline_callbacks; }
      } in_callback;
      for (auto& l : *snapshot) {
        if (closed) // the client was destroyed by a listener before this
          return;
        f(*l);
      }
      return;
    }
    events->post([this, f = std::move(f)] {
      std::shared_ptr<const listener_list> snapshot;
      {
        std::lock_guard<std::mutex> guard{listeners_mtx};
        snapshot = listeners;
      }
      for (auto& l : *snapshot)
        f(*l);
    });
  }
};

/// Wall-clock milliseconds since the epoch.
uint64_t wall_ms();

/// The public view of a stored message (moved out of `m` by the second).
message to_public(const store::client_message& m);
message to_public(store::client_message&& m);

/// A log message as the local database keeps it (status SENT for an
/// outgoing copy, RECEIVED_NEW otherwise).
store::client_message from_wire(codec::message& m);

/// Applies an edit or retraction to the stored message `id` and tells the
/// listeners when that changed it (the server's update record and the
/// facade's own call both apply it: the second is a no-op).
status apply_change(client_context& ctx, uint64_t id, codec::update_kind kind,
                    const std::string& payload);

/// Spawns the actor of one client.
caf::actor make_client_actor(caf::actor_system& sys,
                             std::shared_ptr<client_context> ctx);

} // namespace parley::cli

// Local only (never serialized): whitelisted for CAF messages.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::cli::reply_slot)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::cli::server_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::store::client_message)
