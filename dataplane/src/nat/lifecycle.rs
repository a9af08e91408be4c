//! Session life: a slot is taken (free list, then expired, then an
//! unanswered session found along the wheel: netfilter FAQ 3.17), filled with its checksum deltas
//! and indexed; it is removed from every index, chain and list when it
//! expires, is evicted or flushed.
//!
//! Invariant: every live session is in the `i2o` and `o2i` indexes under
//! its own tuple exactly once, and on the expiry wheel exactly once.
#![forbid(unsafe_code)]

use super::*;

/// How far ahead of its head the sweep asks for what a removal touches
/// (`Engine::sweep_ahead`), in sessions.
const SWEEP_AHEAD: u32 = 8;

impl Engine {
    /// Allocates a session slot: free list, then expired, then an
    /// unanswered session (`SessionTable::evictable`).
    #[inline(always)]
    pub(super) fn alloc_session(&mut self, now: u32) -> Result<u32, Verdict> {
        match self.sessions.alloc() {
            Some(i) => Ok(i),
            None => {
                // A full table evicts: the exception in a box sized for its load.
                std::hint::cold_path();
                self.alloc_session_full(now)
            }
        }
    }

    /// [`Engine::alloc_session`] when the free list is empty.
    #[inline(never)]
    pub(super) fn alloc_session_full(&mut self, now: u32) -> Result<u32, Verdict> {
        self.expire(now, EXPIRE_BUDGET);
        if let Some(i) = self.sessions.alloc() {
            return Ok(i);
        }
        if let Some(v) = self.sessions.evictable(now, &self.class_timeout) {
            self.remove_as(v, now, ports::SessionChange::Evicted);
            self.counters.sessions_evicted += 1;
            if let Some(i) = self.sessions.alloc() {
                return Ok(i);
            }
        }
        Err(Verdict::Drop(DropReason::TableFull))
    }

    /// A new session's timeout class: UDP starts unreplied.
    pub(super) fn class_for(&self, proto: L4, tcp_state: TcpState) -> u8 {
        match proto {
            L4::Tcp => tcp_state.class(),
            L4::Udp => class::UDP_UNREPLIED,
            L4::Icmp => class::ICMP,
            L4::Other => class::OTHER,
        }
    }

    /// Fills a slot, indexes it and puts it on its list.
    pub(super) fn install(&mut self, idx: u32, s: Session, now: u32, tcp_flags: u8) {
        self.install_hashed(idx, s, now, tcp_flags, None);
    }

    /// [`Engine::install`] with the inside-to-outside hash, if the caller
    /// already has it from the packet.
    pub(super) fn install_hashed(&mut self, idx: u32, s: Session, now: u32, tcp_flags: u8, h_i2o: Option<u64>) {
        let pub_ip = keys::public_ip(&self.ports, &s);
        self.install_inline(idx, s, now, tcp_flags, h_i2o, pub_ip);
    }

    /// [`Engine::install_hashed`], inlined where a new mapping is made (the
    /// common new session), with the session's public address `pub_ip`
    /// ([`keys::public_ip`]), which that caller has at hand.
    #[inline(always)]
    pub(super) fn install_inline(
        &mut self,
        idx: u32,
        mut s: Session,
        now: u32,
        tcp_flags: u8,
        h_i2o: Option<u64>,
        pub_ip: u32,
    ) {
        let proto = s.proto;
        s.tcp = if proto == L4::Tcp { TcpState::initial(tcp_flags) } else { TcpState::NONE };
        s.last_seen = now;
        s.public_ip = pub_ip.into();
        // i2o rewrites inside -> public; the deltas undo themselves o2i.
        (s.ip_delta, s.l4_delta) =
            rewrite::session_deltas(s.inside_ip, s.inside_port, s.public_ip, s.public_port, proto);
        let cls = self.class_for(proto, s.tcp);
        s.class = cls;
        if let Some(x) = self.sessions.hot.get_mut(idx as usize) {
            *x = s;
        }
        // The o2i slot is a cache miss in a large table: held back
        // (`LaterIndex::insert_later`), its line arrives while the next new
        // sessions are made. (Asked for here and written at the end of the
        // install, as before, the miss still stalled it: without the o2i and
        // omap inserts new sessions ran 25% faster at 1M.)
        let ho = keys::session_o2i(self.seed, &s);
        self.o2i.insert_later(ho, idx);
        // Only a TCP session's window is ever read (`tcp_window`, the fast
        // lane's TCP hit): another's install leaves its line alone.
        if proto == L4::Tcp {
            if let Some(w) = self.sessions.tcp.get_mut(idx as usize) {
                *w = TcpWindow::NEW;
            }
        }
        let hi = h_i2o.unwrap_or_else(|| keys::session_i2o(self.seed, &s));
        self.i2o.insert(hi, idx);
        self.created.add(hi, ho);
        self.sessions.link_new(idx, cls, &self.class_timeout, now);
        self.counters.sessions_created += 1;
        if self.ports.log_sessions {
            self.note_session(idx, ports::SessionChange::Created);
        }
    }

    /// Records a session event for session `idx` if its pool logs sessions
    /// (RFC 8158 natEvent 1 and 2), without the destination unless the pool
    /// asks for it (RFC 6888 REQ-12). Into the bounded event buffer: never
    /// allocates; a full buffer counts the loss.
    #[cold]
    #[inline(never)]
    fn note_session(&mut self, idx: u32, change: ports::SessionChange) {
        let s = self.sessions.get(idx);
        if s.flags & flag::NO_NAT != 0 || s.class == session::FREE {
            return;
        }
        let Some(ad) = self.ports.addrs.get(usize::from(s.addr())) else { return };
        if self.sync_sessions && s.flags & flag::MAPPED != 0 && matches!(s.proto, L4::Tcp | L4::Udp) {
            let info = ports::SessionInfo {
                change,
                proto: s.proto.ip_proto(),
                inside_port: s.inside_port.get(),
                remote: s.remote_ip.get(),
                remote_port: s.remote_port.get(),
            };
            let kind = ports::EventKind::Sync(info);
            let (public, pool) = (ad.ip, ad.pool);
            let ev = ports::BlockEvent {
                kind,
                inside: s.inside_ip.get(),
                public,
                first_port: s.public_port.get(),
                last_port: s.public_port.get(),
                pool,
            };
            self.ports.push_event(ev);
        }
        let Some(pool) = self.ports.pool_of(s.addr()) else { return };
        if !pool.params.log_sessions {
            return;
        }
        let dest = pool.params.log_destination;
        let Some(ad) = self.ports.addrs.get(usize::from(s.addr())) else { return };
        let info = ports::SessionInfo {
            change,
            proto: s.proto.ip_proto(),
            inside_port: s.inside_port.get(),
            remote: if dest { s.remote_ip.get() } else { 0 },
            remote_port: if dest { s.remote_port.get() } else { 0 },
        };
        let ev = ports::BlockEvent {
            kind: ports::EventKind::Session(info),
            inside: s.inside_ip.get(),
            public: ad.ip,
            first_port: s.public_port.get(),
            last_port: s.public_port.get(),
            pool: ad.pool,
        };
        self.ports.push_event(ev);
    }

    /// A session that is not part of a mapping (no-NAT, forwards). `h_i2o`:
    /// the packet's hash if it is the session's inside-to-outside one.
    pub(super) fn new_unmapped(
        &mut self,
        now: u32,
        (proto, tcp_flags): (L4, u8),
        flags: u8,
        (inside, iport): (u32, u16),
        (remote, rport): (u32, u16),
        h_i2o: Option<u64>,
    ) -> Result<u32, Verdict> {
        let idx = self.alloc_session(now)?;
        let rport = if proto == L4::Icmp { 0 } else { rport };
        let s = Session {
            inside_ip: inside.into(),
            remote_ip: remote.into(),
            inside_port: iport.into(),
            remote_port: rport.into(),
            public_port: iport.into(),
            proto,
            flags,
            ..Session::default()
        };
        self.install_hashed(idx, s, now, tcp_flags, h_i2o);
        Ok(idx)
    }

    /// True if session `h` is live; if its timeout has passed, removes it.
    pub(super) fn live_or_reap(&mut self, h: u32, now: u32) -> bool {
        let s = self.sessions.get(h);
        if self.stale(&s, now) {
            std::hint::cold_path();
            self.reap(h, now);
            return false;
        }
        true
    }

    /// Removes a session whose timeout has passed, counting it as expired.
    pub(super) fn reap(&mut self, idx: u32, now: u32) {
        self.remove_as(idx, now, ports::SessionChange::Expired);
        self.counters.sessions_expired += 1;
    }

    /// Removes a session: indexes, mapping chain, port, subscriber, list.
    pub(super) fn remove(&mut self, idx: u32, now: u32) {
        self.remove_as(idx, now, ports::SessionChange::Flushed);
    }

    /// [`Engine::remove`], saying why (for the session event).
    pub(super) fn remove_as(&mut self, idx: u32, now: u32, why: ports::SessionChange) {
        let s = self.sessions.get(idx);
        if s.class == session::FREE {
            return;
        }
        if self.ports.log_sessions {
            self.note_session(idx, why);
        }
        let (hi, ho) = self.session_hashes(&s);
        {
            let (hot, seed) = (&self.sessions.hot, self.seed);
            self.i2o.remove(hi, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_i2o(seed, x)));
            self.o2i.remove(ho, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_o2i(seed, x)));
        }
        if s.proto == L4::Tcp {
            self.alg_close(idx);
        }
        if s.flags & flag::MAPPED != 0 {
            self.unchain(idx, &s, now);
        }
        if s.flags & flag::SUB != 0 {
            let released = self.ports.remove_session(self.session_sub(&s));
            self.counters.blocks_released += u64::from(released);
        }
        self.sessions.unschedule(idx);
        self.sessions.free(idx);
    }

    /// The sweep's look-ahead (tables past the caches), moved one session
    /// along the bucket: asks for the hot and cold halves of the session
    /// 2 x [`SWEEP_AHEAD`] places behind `head`, and for the index slots a
    /// removal of the one [`SWEEP_AHEAD`] places behind would touch (its
    /// hot half asked for earlier): the removals' misses overlap instead
    /// of queueing (the one half [`SWEEP_AHEAD`] behind: see
    /// `sweep_ahead_tails`). Sessions are removed or re-filed only at the
    /// head, so all three stay in the bucket until they reach it; a position past the
    /// bucket's end is NIL and stays so. Hints only: nothing is written
    /// through them.
    #[inline(always)]
    fn sweep_ahead(&self, head: u32, ahead: Option<(u32, u32, u32)>) -> (u32, u32, u32) {
        let next = |j: u32| if j == NIL { NIL } else { self.sessions.next_in_bucket(j) };
        let (mid, near, far) = match ahead {
            Some((mid, near, far)) => (next(mid), next(near), next(far)),
            None => {
                // The bucket's first session: walk to the three positions.
                let (mut j, mut mid, mut near) = (head, NIL, NIL);
                for k in 1..=2 * SWEEP_AHEAD {
                    j = next(j);
                    if k == SWEEP_AHEAD / 2 {
                        mid = j;
                    }
                    if k == SWEEP_AHEAD {
                        near = j;
                    }
                }
                (mid, near, j)
            }
        };
        self.sweep_ahead_tails(mid);
        if let Some(x) = self.sessions.hot.get(far as usize) {
            crate::xdp::prefetch::read(x);
        }
        if let Some(c) = self.sessions.cold.get(far as usize) {
            crate::xdp::prefetch::read(c);
        }
        if let Some(s) = self.sessions.hot.get(near as usize) {
            self.i2o.prefetch(keys::session_i2o(self.seed, s));
            self.o2i.prefetch(keys::session_o2i(self.seed, s));
            if s.flags & flag::MAPPED != 0 {
                self.imap.prefetch(keys::session_imap(self.seed, s));
                self.omap.prefetch(keys::session_omap(self.seed, s));
            }
        }
        (mid, near, far)
    }

    /// The sweep's third look-ahead step, for the session half of
    /// [`SWEEP_AHEAD`] behind the head (its index slots asked for earlier):
    /// asks for the hot halves of the sessions its removals will rehash
    /// (entries shifted back from `index::FAR` or further: rare, as
    /// every other entry's distance from home is in its slot).
    #[inline(always)]
    fn sweep_ahead_tails(&self, mid: u32) {
        let Some(s) = self.sessions.hot.get(mid as usize) else {
            return;
        };
        let hot = &self.sessions.hot;
        let ask = |j: u32| {
            if let Some(x) = hot.get(j as usize) {
                crate::xdp::prefetch::read(x);
            }
        };
        const TAIL: usize = 4;
        self.i2o.for_cluster_tail(keys::session_i2o(self.seed, s), mid, TAIL, ask);
        self.o2i.for_cluster_tail(keys::session_o2i(self.seed, s), mid, TAIL, ask);
        if s.flags & flag::MAPPED != 0 {
            self.imap.for_cluster_tail(keys::session_imap(self.seed, s), mid, TAIL, ask);
            self.omap.for_cluster_tail(keys::session_omap(self.seed, s), mid, TAIL, ask);
        }
    }

    /// True if [`Engine::expire`] at `now` has work left: a wheel second
    /// that has come (an idle worker then sleeps short, so the sweep's
    /// budget a wake does not leave sessions late).
    pub fn sweep_behind(&mut self, now: u32) -> bool {
        !self.standby && self.sessions.due(now).is_some()
    }

    /// Reclaims sessions whose timeout ended, looking at each wheel bucket
    /// whose second has come; re-files the ones active since. Does at most
    /// `budget` removals or re-filings (the rest waits for the next call).
    /// Drops the held fragments whose time is up too (`nat::frag`).
    /// Called once per batch; call it from an idle worker too.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        // A standby's sessions end when the active box says (`nat::ha`).
        if self.standby {
            return 0;
        }
        self.expire_held(now);
        let mut done = 0;
        let mut steps = 0;
        let mut empty_buckets = 0u32;
        // The look-ahead of large tables (see `sweep_ahead`): the sessions
        // half SWEEP_AHEAD, SWEEP_AHEAD and twice that behind the head in
        // its bucket; None until the bucket's first session.
        let mut ahead = None;
        while let Some((head, second)) = self.sessions.due(now) {
            if head == NIL {
                self.sessions.advance();
                empty_buckets += 1;
                ahead = None;
                if empty_buckets > self.sessions.horizon() {
                    break;
                }
                continue;
            }
            if steps >= budget {
                break;
            }
            steps += 1;
            if self.prefetch {
                ahead = Some(self.sweep_ahead(head, ahead));
            }
            let s = self.sessions.get(head);
            if self.stale(&s, now) {
                self.reap(head, now);
                done += 1;
            } else {
                let t = self.class_timeout.get(usize::from(s.class)).copied().unwrap_or(0);
                // Active since it was filed, or filed early (wheel reach): file again.
                let d = s.last_seen.saturating_add(t).max(second + 1);
                self.sessions.reschedule(head, d, now);
            }
        }
        done
    }
}
