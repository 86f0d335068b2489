#include "actors/server/dispatcher.hpp"
#include "actors/common/tsan.hpp"

#include "actors/server/context.hpp"
#include "codec/codec.hpp"

#include <caf/all.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

namespace parley::srv {

namespace {

struct device_session {
  std::string device;
  caf::actor session;
};

/// Sessions that subscribed to the online/offline presence of one user.
struct watchers {
  std::string address; ///< The watched user.
  std::vector<caf::actor> sessions;
};

struct dispatcher_state {
  std::shared_ptr<context> ctx;
  std::unordered_map<uint64_t, std::vector<device_session>> online;
  /// The uid of each session in `online`: a session's end (down_msg) finds
  /// its entry without a walk over every online user. Most sessions that
  /// end are in no entry by then (they unregistered first, and the down_msg
  /// was already queued when that demonitored them): the walk made 10,000
  /// reconnects cost 10,000 walks of 10,000 users, a quarter of the server's
  /// CPU in a reconnect storm (BENCHMARKS.md).
  std::unordered_map<caf::actor_addr, uint64_t> uid_of;
  uint64_t sessions = 0;
  /// Presence subscriptions: watched uid -> subscribers, and per
  /// subscribing session the uids it watches (to drop them when it ends).
  std::unordered_map<uint64_t, watchers> watched;
  std::unordered_map<caf::actor_addr, std::vector<uint64_t>> watching;
  static inline const char* name = "parley.dispatcher";
};

using dispatcher_ptr =
  caf::stateful_actor<dispatcher_state, net::hb_actor<dispatcher_actor::base>>*;

/// A presence frame about `address`, encoded.
bytes presence_frame(const std::string& address, codec::presence_kind kind,
                     uint64_t now_ms) {
  codec::buffer out;
  codec::encode(codec::presence{address, 0, kind, now_ms}, out);
  return out;
}

/// Tells the subscribers of `uid` that it came online or went offline.
void announce(dispatcher_ptr self, uint64_t uid, codec::presence_kind kind) {
  auto& st = self->state;
  auto w = st.watched.find(uid);
  if (w == st.watched.end())
    return;
  auto frame = presence_frame(w->second.address, kind, st.ctx->now());
  for (auto& s : w->second.sessions)
    caf::anon_send(s, realtime_atom::value, frame);
}

/// Drops one subscription of session `who` (if any).
void unwatch(dispatcher_ptr self, uint64_t uid, const caf::actor_addr& who) {
  auto& st = self->state;
  auto w = st.watched.find(uid);
  if (w == st.watched.end())
    return;
  auto& v = w->second.sessions;
  v.erase(std::remove_if(v.begin(), v.end(),
                         [&](const caf::actor& a) { return a.address() == who; }),
          v.end());
  if (v.empty())
    st.watched.erase(w);
}

/// Drops every subscription of a session that ended.
void unwatch_all(dispatcher_ptr self, const caf::actor_addr& who) {
  auto& st = self->state;
  auto i = st.watching.find(who);
  if (i == st.watching.end())
    return;
  for (auto uid : i->second)
    unwatch(self, uid, who);
  st.watching.erase(i);
}

void remove(dispatcher_ptr self, uint64_t uid, const caf::actor_addr& who) {
  auto& st = self->state;
  unwatch_all(self, who);
  auto i = st.online.find(uid);
  if (i == st.online.end())
    return;
  auto& v = i->second;
  for (auto j = v.begin(); j != v.end(); ++j) {
    if (j->session.address() == who) {
      v.erase(j);
      st.uid_of.erase(who);
      --st.sessions;
      break;
    }
  }
  if (v.empty()) {
    st.online.erase(i);
    announce(self, uid, codec::presence_kind::offline);
  }
}

} // namespace

dispatcher_actor make_dispatcher_actor(caf::actor_system& sys,
                                       std::shared_ptr<context> ctx) {
  auto fn = [](dispatcher_ptr self,
               std::shared_ptr<context> c) -> dispatcher_actor::behavior_type {
    self->state.ctx = std::move(c);
    // A session that dies without unregistering (a bug, or an exception)
    // must not stay "online".
    self->set_down_handler([=](caf::down_msg& dm) {
      auto& st = self->state;
      if (auto i = st.uid_of.find(dm.source); i != st.uid_of.end())
        remove(self, i->second, dm.source);
    });
    return {
      [=](register_atom, uint64_t uid, std::string& device,
          caf::actor& session) {
        auto& v = self->state.online[uid];
        for (auto& ds : v) {
          if (ds.device == device) {
            // Same device logs in again: the new session replaces the old.
            caf::anon_send(ds.session, kick_atom::value,
                           static_cast<uint8_t>(codec::goodbye_reason::signout),
                           std::string{"this device logged in again elsewhere; "
                                       "this session ends and must not "
                                       "reconnect by itself"});
            self->demonitor(ds.session);
            self->monitor(session);
            // Records appended before this registration notified nobody:
            // the session streams once more now (it pumped at login, but
            // appends may have landed between that and this).
            caf::anon_send(session, log_atom::value);
            self->state.uid_of.erase(ds.session.address());
            self->state.uid_of.emplace(session.address(), uid);
            ds.session = std::move(session);
            return;
          }
        }
        self->monitor(session);
        caf::anon_send(session, log_atom::value); // as above
        self->state.uid_of.emplace(session.address(), uid);
        v.push_back(device_session{std::move(device), std::move(session)});
        ++self->state.sessions;
        if (v.size() == 1) // the user's first device: now online
          announce(self, uid, codec::presence_kind::online);
      },
      [=](unregister_atom, uint64_t uid, const std::string&,
          const caf::actor& session) {
        self->demonitor(session);
        remove(self, uid, session.address());
      },
      [=](log_atom, const std::vector<uint64_t>& uids,
          const std::vector<uint64_t>& heads,
          const std::vector<record_batch>& records) {
        auto& online = self->state.online;
        for (size_t k = 0; k < uids.size(); ++k) {
          auto i = online.find(uids[k]);
          if (i == online.end())
            continue;
          // With the head, a session that streamed that far already has
          // nothing to read (it streamed when its own append was answered);
          // with the records, one that streamed up to them needs no read.
          auto head = k < heads.size() ? heads[k] : ~uint64_t{0};
          auto recs = k < records.size() ? records[k] : record_batch{};
          for (auto& ds : i->second)
            caf::anon_send(ds.session, log_atom::value, head, recs);
        }
      },
      [=](realtime_atom, uint64_t uid, const bytes& frame) -> uint32_t {
        auto& online = self->state.online;
        auto i = online.find(uid);
        if (i == online.end())
          return 0;
        for (auto& ds : i->second)
          caf::anon_send(ds.session, realtime_atom::value, frame);
        return static_cast<uint32_t>(i->second.size());
      },
      // Presence and real-time frames for several users (never stored).
      [=](realtime_atom, const std::vector<uint64_t>& uids,
          const bytes& frame) {
        auto& online = self->state.online;
        for (auto uid : uids) {
          auto i = online.find(uid);
          if (i == online.end())
            continue;
          for (auto& ds : i->second)
            caf::anon_send(ds.session, realtime_atom::value, frame);
        }
      },
      // A session (un)subscribes to the online/offline presence of users
      // (uids with their addresses). A new subscriber learns the current
      // state at once.
      [=](subscribe_atom, bool on, const std::vector<uint64_t>& uids,
          const std::vector<std::string>& addresses, caf::actor& session) {
        auto& st = self->state;
        auto who = session.address();
        auto& mine = st.watching[who];
        for (size_t k = 0; k < uids.size() && k < addresses.size(); ++k) {
          auto uid = uids[k];
          auto has = std::find(mine.begin(), mine.end(), uid) != mine.end();
          if (!on) {
            if (has) {
              unwatch(self, uid, who);
              mine.erase(std::remove(mine.begin(), mine.end(), uid),
                         mine.end());
            }
            continue;
          }
          if (!has) {
            mine.push_back(uid);
            auto& w = st.watched[uid];
            w.address = addresses[k];
            w.sessions.push_back(session);
          }
          auto kind = st.online.count(uid) != 0
                        ? codec::presence_kind::online
                        : codec::presence_kind::offline;
          caf::anon_send(session, realtime_atom::value,
                         presence_frame(addresses[k], kind, st.ctx->now()));
        }
        if (mine.empty())
          st.watching.erase(who);
      },
      [=](kick_atom, uint64_t uid, uint8_t reason, const std::string& text) {
        auto& online = self->state.online;
        auto i = online.find(uid);
        if (i == online.end())
          return;
        for (auto& ds : i->second)
          caf::anon_send(ds.session, kick_atom::value, reason, text);
      },
      [=](count_atom) -> uint64_t { return self->state.sessions; },
      [=](count_atom, count_slot& slot) {
        slot->set_value(self->state.sessions);
      },
    };
  };
  return sys.spawn(fn, std::move(ctx));
}

} // namespace parley::srv
