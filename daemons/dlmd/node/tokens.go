package node

// Fencing tokens (issue 11): every grant of PW or EX carries a number that
// grows with every such grant of the resource, cluster-wide and across
// re-mastering, so that a storage system that remembers the highest token
// it has seen refuses a holder whose lock was given away while it was
// paused (the fencing-token argument). The master's lock table counts the
// grants of each resource (lockspace.Effect.Token); what this package
// adds is the counter's floor whenever a resource gets a new master, so
// that no new master ever grants a number an earlier one granted.
//
// A token is era<<32 + n: the high half is the era of the recovery under
// which the resource's counter started, the low half counts grants. Each
// recovery plan has an era (directory.Plan.Era) above the era of every
// plan computed before it by any member: at least directory.EraOf(ID)
// (epoch<<8 | round: membership epochs and rounds only grow) and above
// the eras the members report in their markers, which keeps eras growing
// when the rounds of an epoch start again (every dlmd fenced and
// rejoining at round 0). A master that is lost installed a plan whose
// every member computed it (it waited for their "copies done"), so a
// survivor that took part reports its era. A node that starts mastering a
// resource starts its counter at tokenBase of its directory's era at
// least:
//
//   - when a recovery moves a resource (its master was lost), the new
//     master rebuilds it from the survivors' copies, which keep their
//     tokens, and starts the counter above the highest copy and at
//     tokenBase of the new era. The lost master may have granted tokens no
//     survivor ever saw (to its own clients, or to locks since released);
//     they were all granted under an earlier era, so below the new base.
//     A jump of max(seen)+2^32 could not promise that: a master that
//     served its own clients for months may have granted any number of
//     tokens nobody else saw.
//   - within one recovery, a master that gives a resource up (toss) sends
//     its last token with the Remove to the directory node, which keeps
//     the highest such token of all the resources it directs (one number,
//     not one per name: memory stays bounded) and hands it to the next
//     master in the LookupReply; the new master starts above it. The
//     directory node does not change within a recovery, and a Remove that
//     arrives under a later recovery is covered by that recovery's era.
//   - a master that keeps a resource keeps its counter through recoveries,
//     even while the resource has no lock (mastery.floor holds it when the
//     lockspace's table goes).
//
// Limits, by design of a 64-bit token: the order holds while a resource's
// counter stays below the base of the next era, that is while fewer than
// 2^32 grants of PW or EX are made on it (from the base it inherited)
// before the next recovery; and eras above 2^32 (epochs above 2^24) wrap.
// A restart of every dlmd process of the cluster, none surviving, without
// a membership change starts again at the same epoch with no member
// remembering the last era, and may reuse tokens: a membership change
// (which moves the epoch on) restores the order. A fenced dlmd keeps its
// era, so a cluster whose every node fenced does not.
func tokenBase(era uint64) uint64 { return era << 32 }
