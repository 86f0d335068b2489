#include "actors/server/dispatcher.hpp"
#include "actors/common/tsan.hpp"

#include "actors/server/context.hpp"
#include "codec/protocol.hpp"

#include <caf/all.hpp>

#include <spdlog/spdlog.h>

#include <unordered_map>

namespace parley::srv {

namespace {

struct device_session {
  std::string device;
  caf::actor session;
};

struct dispatcher_state {
  std::shared_ptr<context> ctx;
  std::unordered_map<uint64_t, std::vector<device_session>> online;
  uint64_t sessions = 0;
  static inline const char* name = "parley.dispatcher";
};

using dispatcher_ptr =
  caf::stateful_actor<dispatcher_state, net::hb_actor<dispatcher_actor::base>>*;

void remove(dispatcher_ptr self, uint64_t uid, const caf::actor_addr& who) {
  auto& st = self->state;
  auto i = st.online.find(uid);
  if (i == st.online.end())
    return;
  auto& v = i->second;
  for (auto j = v.begin(); j != v.end(); ++j) {
    if (j->session.address() == who) {
      v.erase(j);
      --st.sessions;
      break;
    }
  }
  if (v.empty())
    st.online.erase(i);
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
      for (auto i = st.online.begin(); i != st.online.end(); ++i) {
        for (auto& ds : i->second) {
          if (ds.session.address() == dm.source) {
            remove(self, i->first, dm.source);
            return;
          }
        }
      }
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
            ds.session = std::move(session);
            return;
          }
        }
        self->monitor(session);
        caf::anon_send(session, log_atom::value); // as above
        v.push_back(device_session{std::move(device), std::move(session)});
        ++self->state.sessions;
      },
      [=](unregister_atom, uint64_t uid, const std::string&,
          const caf::actor& session) {
        self->demonitor(session);
        remove(self, uid, session.address());
      },
      [=](log_atom, const std::vector<uint64_t>& uids) {
        auto& online = self->state.online;
        for (auto uid : uids) {
          auto i = online.find(uid);
          if (i == online.end())
            continue;
          for (auto& ds : i->second)
            caf::anon_send(ds.session, log_atom::value);
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
