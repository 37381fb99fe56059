package cluster

// Placement of cluster checks is a pure function: members + checks + the current assignment
// go in, the new assignment and the moves that lead to it come out. No I/O, no clock, no
// randomness, no goroutines, so the aggregator can call it on every membership change and
// tests can explore it exhaustively.
//
// A node's score is its gossiped load (1-minute load average ÷ CPUs), plus
// HealthWeight × its memberlist health score, plus the Cost of every check assigned to it in
// the assignment being built. Lower is better. Ties are broken by node name, and checks are
// processed by decreasing Cost, then by name, so the result does not depend on input order.

import (
	"cmp"
	"math"
	"slices"
)

// Move reasons, as used in Move.Reason and the picket_placement_moves_total{reason} label.
const (
	// MoveNew places a slot that had no node: a new check, a raised vantage, or a check
	// that had fewer alive nodes to run on than its vantage. From is empty.
	MoveNew = "new"
	// MoveNodeFailed takes a slot off a node that is not alive (suspect, dead, left) or not
	// a member at all. To is empty when no other alive node is free to take it (the check
	// then runs on all alive nodes, fewer than its vantage).
	MoveNodeFailed = "node_failed"
	// MoveRebalance takes a slot off an alive node onto a node whose score is better by
	// more than PlacementPolicy.Margin.
	MoveRebalance = "rebalance"
	// MoveRemoved drops a slot from an alive node: the check is gone, or its vantage was
	// lowered (the worst-scored hosts go). Also used, with any From, for every node of a
	// check that is gone. To is empty.
	MoveRemoved = "removed"
)

// DefaultCheckCost is the Cost used for a check whose cost is not known yet (0, negative
// or NaN): a 10 ms probe every second, small next to a node's load.
const DefaultCheckCost = 0.01

const (
	// minCheckCost and maxCheckCost bound a check's cost; maxScorePart bounds each part of
	// a node's base score. Together with minPlacementMargin they keep float rounding far
	// below the margin, so a rounding error can never make a check bounce between nodes.
	minCheckCost       = 1e-6
	maxCheckCost       = 1.0
	maxScorePart       = 1000.0
	minPlacementMargin = 1e-6
)

// PlacementNode is one cluster member as placement sees it.
type PlacementNode struct {
	// Name is the member's node name. Nodes with an empty name are ignored.
	Name string
	// Alive is true only for status alive; suspect, dead and left nodes get no checks.
	Alive bool
	// Load is the gossiped 1-minute load average divided by the number of CPUs.
	// Negative or NaN counts as 0, values above 1000 as 1000.
	Load float64
	// Health is memberlist's health (awareness) score: 0 is best. Negative counts as 0.
	Health int
}

// PlacementCheck is one cluster check to place.
type PlacementCheck struct {
	// Name identifies the check; it is the key of Assignment.
	Name string
	// Nodes is vantage.nodes: on how many distinct nodes the check runs. Below 1 counts as 1.
	Nodes int
	// Cost is the learnt average run time divided by the interval. 0 (or negative, NaN)
	// when not known yet: DefaultCheckCost is used. Capped at 1.
	Cost float64
}

// Assignment maps a check name to the names of the nodes that run it, sorted. The map
// returned by Place holds every check it was given, with an empty slice when no node is
// alive.
type Assignment map[string][]string

// PerNode counts the slots each node holds, for picket_placement_assignments{node}.
func (a Assignment) PerNode() map[string]int {
	out := make(map[string]int)
	for _, nodes := range a {
		for _, n := range nodes {
			out[n]++
		}
	}
	return out
}

// PlacementPolicy tunes Place.
type PlacementPolicy struct {
	// Margin is how much better (lower) another node's score, with the check added, must
	// be before a check leaves an alive node. Values below 1e-6 (and NaN) count as 1e-6.
	Margin float64
	// MaxMoves caps the rebalance moves one Place call makes. Moves forced by failed
	// nodes, new checks or removed checks are never capped. 0 or less disables rebalancing.
	MaxMoves int
	// HealthWeight is added to a node's score per point of its health score. Negative or
	// NaN counts as 0.
	HealthWeight float64
}

// DefaultPlacementPolicy returns the policy the aggregator uses: a check leaves its node
// only when another is better by more than a quarter of a CPU, at most 10 such moves per
// call, and each point of memberlist health score weighs as 0.1 of load.
func DefaultPlacementPolicy() PlacementPolicy {
	return PlacementPolicy{Margin: 0.25, MaxMoves: 10, HealthWeight: 0.1}
}

// Move is one change between the current assignment and the one Place returns. Moves are
// net: a check never leaves and re-enters the same node, so they can be applied in any
// order.
type Move struct {
	// Check is the check's name.
	Check string
	// From is the node the check left; empty for MoveNew.
	From string
	// To is the node the check now runs on; empty for MoveRemoved, and for MoveNodeFailed
	// when no alive node could take the slot.
	To string
	// Reason is one of MoveNew, MoveNodeFailed, MoveRebalance, MoveRemoved.
	Reason string
}

// Place computes the assignment of cluster checks to nodes.
//
// Every check gets exactly min(Nodes, alive nodes) distinct alive nodes. Slots on nodes
// that are not alive or not in nodes move (MoveNodeFailed); checks missing from checks are
// dropped (MoveRemoved); missing slots go to the lowest-scored alive node not already
// running the check. Slots on alive nodes stay where they are unless moving one lowers its
// host's score by more than p.Margin (score of the old host > score of the new one with the
// check added + Margin). Such moves are made best first, one at a time, each on the scores
// left by the previous ones, until none is left; at most p.MaxMoves checks end up off a
// node they had (MoveRebalance). Slots placed in this call (new or replacing a failed
// node) may be moved again without counting against MaxMoves.
//
// Place is deterministic and does not depend on the order of nodes, checks or of the node
// lists in current; current is not modified. Duplicate node names merge pessimistically
// (alive only if every entry says so, highest load and health); duplicate check names
// take the highest Nodes and Cost. Place is stable: called again with its own result and
// the same nodes and checks it makes no move, unless it made MaxMoves rebalance moves
// (then repeated calls converge). Moves are sorted by check, then From, then To.
func Place(nodes []PlacementNode, checks []PlacementCheck, current Assignment, p PlacementPolicy) (Assignment, []Move) {
	a, moves, _ := placeTrace(nodes, checks, current, p)
	return a, moves
}

// placeTrace is Place, also returning the rebalancing steps it took, in order, for tests.
func placeTrace(nodes []PlacementNode, checks []PlacementCheck, current Assignment, p PlacementPolicy) (Assignment, []Move, []rebalanceStep) {
	pl := newPlacer(nodes, checks, p.sanitized())
	pl.keep(current)
	pl.trim()
	pl.fill()
	pl.rebalance()
	return pl.result(), pl.moves(current), pl.steps
}

// LeastLoaded returns the names of the n best-scored alive nodes (load plus health, no
// check costs), best first, skipping names in exclude (which may be nil). It returns fewer
// when fewer alive nodes are left. Used by `picket run` without --node.
func LeastLoaded(nodes []PlacementNode, n int, exclude map[string]bool, p PlacementPolicy) []string {
	if n <= 0 {
		return nil
	}
	p = p.sanitized()
	names, base := scoredAlive(nodes, p)
	order := make([]int, 0, len(names))
	for i, name := range names {
		if !exclude[name] {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(base[a], base[b]), cmp.Compare(a, b))
	})
	out := make([]string, 0, min(n, len(order)))
	for _, i := range order[:min(n, len(order))] {
		out = append(out, names[i])
	}
	return out
}

// SweepShare is one node's part of a sweep.
type SweepShare struct {
	Node  string
	Count int
}

// Spread splits targets sweep targets over the alive nodes in proportion to their spare
// capacity, max(0, 1 − score) with score = load + health; when no node has spare capacity
// they share equally. The counts add up to targets (0 when no node is alive). The result
// lists only nodes with a non-zero count, sorted by name; remainders go to the largest
// fractional parts, ties to the lower name. Used by `picket sweep` (map_reduce).
func Spread(nodes []PlacementNode, targets int, p PlacementPolicy) []SweepShare {
	p = p.sanitized()
	names, base := scoredAlive(nodes, p)
	if targets <= 0 || len(names) == 0 {
		return nil
	}
	weights := make([]float64, len(names))
	var sum float64
	for i, b := range base {
		weights[i] = max(0, 1-b)
		sum += weights[i]
	}
	if sum == 0 {
		for i := range weights {
			weights[i] = 1
		}
		sum = float64(len(weights))
	}
	counts := make([]int, len(names))
	frac := make([]float64, len(names))
	given := 0
	for i, w := range weights {
		q := float64(targets) * w / sum
		counts[i] = int(math.Floor(q))
		frac[i] = q - math.Floor(q)
		given += counts[i]
	}
	byFrac := make([]int, len(names))
	for i := range byFrac {
		byFrac[i] = i
	}
	slices.SortStableFunc(byFrac, func(a, b int) int { return cmp.Compare(frac[b], frac[a]) })
	// Floor never overshoots, and rounding leaves less than one target per node.
	for k := 0; given < targets; k++ {
		counts[byFrac[k%len(byFrac)]]++
		given++
	}
	var out []SweepShare
	for i, c := range counts {
		if c > 0 {
			out = append(out, SweepShare{Node: names[i], Count: c})
		}
	}
	return out
}

// sanitized replaces values Place cannot use with the documented ones.
func (p PlacementPolicy) sanitized() PlacementPolicy {
	if !(p.Margin >= minPlacementMargin) { // also NaN
		p.Margin = minPlacementMargin
	}
	if !(p.HealthWeight > 0) {
		p.HealthWeight = 0
	}
	p.Margin = min(p.Margin, math.MaxFloat64)
	p.HealthWeight = min(p.HealthWeight, math.MaxFloat64)
	p.MaxMoves = max(p.MaxMoves, 0)
	return p
}

// scoredAlive returns the alive nodes' names, sorted, and their base scores (load plus
// weighted health). Duplicate names merge pessimistically.
func scoredAlive(nodes []PlacementNode, p PlacementPolicy) ([]string, []float64) {
	type merged struct {
		alive  bool
		load   float64
		health int
	}
	byName := make(map[string]merged, len(nodes))
	for _, n := range nodes {
		if n.Name == "" {
			continue
		}
		load := n.Load
		if !(load > 0) {
			load = 0
		}
		m, seen := byName[n.Name]
		if !seen {
			byName[n.Name] = merged{alive: n.Alive, load: load, health: max(n.Health, 0)}
			continue
		}
		byName[n.Name] = merged{alive: m.alive && n.Alive, load: max(m.load, load), health: max(m.health, n.Health)}
	}
	names := make([]string, 0, len(byName))
	for name, m := range byName {
		if m.alive {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	base := make([]float64, len(names))
	for i, name := range names {
		m := byName[name]
		base[i] = min(m.load, maxScorePart) + min(p.HealthWeight*float64(m.health), maxScorePart)
	}
	return names, base
}

// rebalanceStep is one rebalancing decision: check moved from one node to another,
// lowering its host's score by gain.
type rebalanceStep struct {
	check, from, to string
	gain            float64
}

// placedCheck is a check being placed. Nodes are indices into placer.names.
type placedCheck struct {
	name  string
	want  int
	cost  float64
	hosts []int // where it runs in the assignment being built
	// orig are the alive nodes it runs on in the current assignment, sorted. A rebalance
	// move counts against MaxMoves when it leaves one of them for a node not among them.
	orig    []int
	failed  []string // nodes it runs on in the current assignment that are not alive, sorted
	trimmed []int    // nodes of orig dropped because it needs fewer
}

// placer holds the state of one Place call. Nodes are referred to by their index in
// names (sorted), checks by their index in checks (by decreasing cost, then name).
type placer struct {
	p      PlacementPolicy
	names  []string
	index  map[string]int
	base   []float64
	score  []float64
	checks []placedCheck
	byName map[string]int
	steps  []rebalanceStep
}

func newPlacer(nodes []PlacementNode, checks []PlacementCheck, p PlacementPolicy) *placer {
	pl := &placer{p: p}
	pl.names, pl.base = scoredAlive(nodes, p)
	pl.index = make(map[string]int, len(pl.names))
	for i, n := range pl.names {
		pl.index[n] = i
	}
	pl.score = slices.Clone(pl.base)

	pl.byName = make(map[string]int, len(checks))
	for _, c := range checks {
		cost := c.Cost
		switch {
		case !(cost > 0): // also NaN
			cost = DefaultCheckCost
		case cost < minCheckCost:
			cost = minCheckCost
		case cost > maxCheckCost:
			cost = maxCheckCost
		}
		want := max(c.Nodes, 1)
		if i, dup := pl.byName[c.Name]; dup {
			pl.checks[i].want = max(pl.checks[i].want, want)
			pl.checks[i].cost = max(pl.checks[i].cost, cost)
			continue
		}
		pl.byName[c.Name] = len(pl.checks)
		pl.checks = append(pl.checks, placedCheck{name: c.Name, want: want, cost: cost})
	}
	slices.SortFunc(pl.checks, func(a, b placedCheck) int {
		return cmp.Or(cmp.Compare(b.cost, a.cost), cmp.Compare(a.name, b.name))
	})
	for i := range pl.checks {
		pl.checks[i].want = min(pl.checks[i].want, len(pl.names))
		pl.byName[pl.checks[i].name] = i
	}
	return pl
}

// keep takes over the current hosts that are alive and notes the ones that are not.
func (pl *placer) keep(current Assignment) {
	for ci := range pl.checks {
		c := &pl.checks[ci]
		for _, node := range uniqueNames(current[c.name]) {
			i, alive := pl.index[node]
			if !alive {
				c.failed = append(c.failed, node)
				continue
			}
			c.hosts = append(c.hosts, i)
			pl.score[i] += c.cost
		}
		c.orig = slices.Clone(c.hosts)
	}
}

// trim drops the hosts a check no longer needs (vantage lowered), worst first.
func (pl *placer) trim() {
	for ci := range pl.checks {
		c := &pl.checks[ci]
		for len(c.hosts) > c.want {
			worst := 0
			for k, n := range c.hosts {
				if pl.worse(n, c.hosts[worst]) {
					worst = k
				}
			}
			node := c.hosts[worst]
			c.hosts = slices.Delete(c.hosts, worst, worst+1)
			c.trimmed = append(c.trimmed, node)
			pl.score[node] -= c.cost
		}
	}
}

// fill gives every check its missing hosts, each the best node not yet running it.
func (pl *placer) fill() {
	for ci := range pl.checks {
		c := &pl.checks[ci]
		for len(c.hosts) < c.want {
			best := -1
			for i := range pl.names {
				if !c.runsOn(i) && (best < 0 || pl.worse(best, i)) {
					best = i
				}
			}
			c.hosts = append(c.hosts, best)
			pl.score[best] += c.cost
		}
	}
}

// rebalance repeatedly makes the move that lowers a host's score the most, among those
// that lower it by more than the margin and would not take the number of rebalance moves
// Place reports above MaxMoves.
func (pl *placer) rebalance() {
	if len(pl.names) < 2 {
		return
	}
	// The rebalance moves Place reports: per check, the original hosts it left, less those
	// trimmed. A move changes it by delta: +1 when it leaves an original host for another
	// node, -1 when it goes back to one from a node that is not, else 0.
	moved := 0
	order := make([]int, len(pl.names))
	total := 0
	for _, c := range pl.checks {
		total += len(c.hosts)
	}
	// A move always lowers the sum of squared scores, so this loop ends; the guard only
	// bounds the work should that reasoning ever be wrong.
	for guard := 2 * (total + 1) * len(pl.names); guard > 0; guard-- {
		pl.rescore()
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int {
			return cmp.Or(cmp.Compare(pl.score[a], pl.score[b]), cmp.Compare(a, b))
		})
		bestCheck, bestHost, bestTo, bestGain, bestDelta := -1, -1, -1, 0.0, 0
		for ci, c := range pl.checks {
			// The best destination is the lowest-scored node not running the check; when
			// the budget forbids it, the lowest-scored original host it no longer runs on.
			to, toOrig := -1, -1
			for _, i := range order {
				if !c.runsOn(i) {
					to = i
					break
				}
			}
			if to < 0 {
				continue
			}
			for _, i := range c.orig {
				if !c.runsOn(i) && (toOrig < 0 || pl.worse(toOrig, i)) {
					toOrig = i
				}
			}
			for k, from := range c.hosts {
				dest, delta := to, c.isOrig(from)-c.isOrig(to)
				if moved+delta > pl.p.MaxMoves {
					if toOrig < 0 {
						continue
					}
					dest, delta = toOrig, c.isOrig(from)-1
				}
				gain := pl.score[from] - (pl.score[dest] + c.cost)
				if gain <= pl.p.Margin {
					continue
				}
				// Ties go to the earlier check, then to the lower node name.
				if bestCheck < 0 || gain > bestGain ||
					(gain == bestGain && ci == bestCheck && from < c.hosts[bestHost]) {
					bestCheck, bestHost, bestTo, bestGain, bestDelta = ci, k, dest, gain, delta
				}
			}
		}
		if bestCheck < 0 {
			return
		}
		c := &pl.checks[bestCheck]
		pl.steps = append(pl.steps, rebalanceStep{
			check: c.name, from: pl.names[c.hosts[bestHost]], to: pl.names[bestTo], gain: bestGain,
		})
		c.hosts[bestHost] = bestTo
		moved += bestDelta
	}
}

// rescore recomputes every score from the hosts, always summing in the same order, so the
// scores are a function of the assignment alone: a second Place call sees exactly the
// numbers this one stopped at.
func (pl *placer) rescore() {
	copy(pl.score, pl.base)
	for _, c := range pl.checks {
		for _, n := range c.hosts {
			pl.score[n] += c.cost
		}
	}
}

// worse reports whether node a is a worse choice than node b: higher score, or equal
// score and a later name.
func (pl *placer) worse(a, b int) bool {
	if pl.score[a] != pl.score[b] {
		return pl.score[a] > pl.score[b]
	}
	return a > b
}

func (c *placedCheck) runsOn(node int) bool {
	return slices.Contains(c.hosts, node)
}

// isOrig is 1 when node is one of the check's original alive hosts, else 0.
func (c *placedCheck) isOrig(node int) int {
	if _, found := slices.BinarySearch(c.orig, node); found {
		return 1
	}
	return 0
}

func (pl *placer) result() Assignment {
	out := make(Assignment, len(pl.checks))
	for _, c := range pl.checks {
		nodes := make([]string, 0, len(c.hosts))
		for _, n := range c.hosts {
			nodes = append(nodes, pl.names[n])
		}
		slices.Sort(nodes)
		out[c.name] = nodes
	}
	return out
}

// moves describes the net change from current to the result. Per check: of the original
// alive hosts it left, as many as were trimmed are removed (trimmed ones first, then by
// name), the others are paired in name order with the nodes it arrived on (rebalance); the
// arrivals left over replace failed nodes, then are new slots; failed nodes left over have
// no replacement.
func (pl *placer) moves(current Assignment) []Move {
	var out []Move
	for name, nodes := range current {
		if _, ok := pl.byName[name]; !ok {
			for _, node := range uniqueNames(nodes) {
				out = append(out, Move{Check: name, From: node, Reason: MoveRemoved})
			}
		}
	}
	for _, c := range pl.checks {
		var arrived, left []int
		for _, n := range c.hosts {
			if c.isOrig(n) == 0 {
				arrived = append(arrived, n)
			}
		}
		slices.Sort(arrived)
		for _, n := range c.orig {
			if !c.runsOn(n) {
				left = append(left, n)
			}
		}
		// Trimmed nodes still left go first, so they are the ones reported removed.
		slices.SortStableFunc(left, func(a, b int) int {
			return cmp.Compare(1-c.isTrimmed(a), 1-c.isTrimmed(b))
		})
		// len(hosts) = len(orig) - len(left) + len(arrived), len(hosts) = len(orig) -
		// len(trimmed) + fresh slots, and trimmed > 0 only when there are no fresh slots:
		// so len(left) >= len(trimmed), and after the rebalance pairs there are exactly
		// the fresh slots left in arrived.
		for _, from := range left[:len(c.trimmed)] {
			out = append(out, Move{Check: c.name, From: pl.names[from], Reason: MoveRemoved})
		}
		for _, from := range left[len(c.trimmed):] {
			out = append(out, Move{Check: c.name, From: pl.names[from], To: pl.names[arrived[0]], Reason: MoveRebalance})
			arrived = arrived[1:]
		}
		for _, from := range c.failed {
			m := Move{Check: c.name, From: from, Reason: MoveNodeFailed}
			if len(arrived) > 0 {
				m.To, arrived = pl.names[arrived[0]], arrived[1:]
			}
			out = append(out, m)
		}
		for _, to := range arrived {
			out = append(out, Move{Check: c.name, To: pl.names[to], Reason: MoveNew})
		}
	}
	slices.SortFunc(out, func(a, b Move) int {
		return cmp.Or(cmp.Compare(a.Check, b.Check), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return out
}

func (c *placedCheck) isTrimmed(node int) int {
	if slices.Contains(c.trimmed, node) {
		return 1
	}
	return 0
}

// uniqueNames returns a sorted copy of names without duplicates and empty names.
func uniqueNames(names []string) []string {
	out := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "" })
	slices.Sort(out)
	return slices.Compact(out)
}
