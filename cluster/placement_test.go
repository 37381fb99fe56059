package cluster

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func idleNodes(names ...string) []PlacementNode {
	out := make([]PlacementNode, 0, len(names))
	for _, n := range names {
		out = append(out, PlacementNode{Name: n, Alive: true})
	}
	return out
}

func nodesWithLoad(nodes []PlacementNode, name string, load float64) []PlacementNode {
	out := slices.Clone(nodes)
	for i := range out {
		if out[i].Name == name {
			out[i].Load = load
		}
	}
	return out
}

func nodesWithStatus(nodes []PlacementNode, name string, alive bool) []PlacementNode {
	out := slices.Clone(nodes)
	for i := range out {
		if out[i].Name == name {
			out[i].Alive = alive
		}
	}
	return out
}

func placementChecks(names ...string) []PlacementCheck {
	out := make([]PlacementCheck, 0, len(names))
	for _, n := range names {
		out = append(out, PlacementCheck{Name: n, Nodes: 1})
	}
	return out
}

// sixOnThree is the result of placing c1..c6 on idle a, b, c.
func sixOnThree() Assignment {
	return Assignment{"c1": {"a"}, "c2": {"b"}, "c3": {"c"}, "c4": {"a"}, "c5": {"b"}, "c6": {"c"}}
}

func TestPlace(t *testing.T) {
	def := DefaultPlacementPolicy()
	tests := []struct {
		name    string
		nodes   []PlacementNode
		checks  []PlacementCheck
		current Assignment
		policy  PlacementPolicy
		want    Assignment
		moves   []Move
		steps   []rebalanceStep // rebalancing steps, checked when set
	}{
		{
			name:   "six checks spread 2/2/2 over three idle nodes",
			nodes:  idleNodes("c", "a", "b"),
			checks: placementChecks("c6", "c5", "c4", "c3", "c2", "c1"),
			policy: def,
			want:   sixOnThree(),
			moves: []Move{
				{"c1", "", "a", MoveNew}, {"c2", "", "b", MoveNew}, {"c3", "", "c", MoveNew},
				{"c4", "", "a", MoveNew}, {"c5", "", "b", MoveNew}, {"c6", "", "c", MoveNew},
			},
		},
		{
			name:    "a dead node's checks move to the others and nothing else moves",
			nodes:   nodesWithStatus(idleNodes("a", "b", "c"), "c", false),
			checks:  placementChecks("c1", "c2", "c3", "c4", "c5", "c6"),
			current: sixOnThree(),
			policy:  def,
			want:    Assignment{"c1": {"a"}, "c2": {"b"}, "c3": {"a"}, "c4": {"a"}, "c5": {"b"}, "c6": {"b"}},
			moves:   []Move{{"c3", "c", "a", MoveNodeFailed}, {"c6", "c", "b", MoveNodeFailed}},
		},
		{
			name:    "a node that left the member list counts as failed",
			nodes:   idleNodes("a", "b"),
			checks:  placementChecks("c1", "c2", "c3", "c4", "c5", "c6"),
			current: sixOnThree(),
			policy:  def,
			want:    Assignment{"c1": {"a"}, "c2": {"b"}, "c3": {"a"}, "c4": {"a"}, "c5": {"b"}, "c6": {"b"}},
			moves:   []Move{{"c3", "c", "a", MoveNodeFailed}, {"c6", "c", "b", MoveNodeFailed}},
		},
		{
			name:    "a loaded node gets no new check, and keeps its old ones within the margin",
			nodes:   nodesWithLoad(idleNodes("a", "b", "c"), "a", 0.2),
			checks:  placementChecks("c1", "c2", "c3", "c4"),
			current: Assignment{"c1": {"a"}, "c2": {"b"}, "c3": {"c"}},
			policy:  def,
			want:    Assignment{"c1": {"a"}, "c2": {"b"}, "c3": {"c"}, "c4": {"b"}},
			moves:   []Move{{"c4", "", "b", MoveNew}},
		},
		{
			name:    "a check leaves a node once it is worse by more than the margin",
			nodes:   nodesWithLoad(idleNodes("a", "b", "c"), "a", 0.5),
			checks:  placementChecks("c1", "c2", "c3"),
			current: Assignment{"c1": {"a"}, "c2": {"b"}, "c3": {"c"}},
			policy:  def,
			want:    Assignment{"c1": {"b"}, "c2": {"b"}, "c3": {"c"}},
			moves:   []Move{{"c1", "a", "b", MoveRebalance}},
			steps:   []rebalanceStep{{"c1", "a", "b", 0.51 - 0.02}},
		},
		{
			name:   "vantage 3 on three nodes",
			nodes:  idleNodes("a", "b", "c"),
			checks: []PlacementCheck{{Name: "api", Nodes: 3}},
			policy: def,
			want:   Assignment{"api": {"a", "b", "c"}},
			moves:  []Move{{"api", "", "a", MoveNew}, {"api", "", "b", MoveNew}, {"api", "", "c", MoveNew}},
		},
		{
			name:    "vantage 3 with two alive nodes runs on two, the suspect's slot is dropped",
			nodes:   nodesWithStatus(idleNodes("a", "b", "c"), "b", false),
			checks:  []PlacementCheck{{Name: "api", Nodes: 3}},
			current: Assignment{"api": {"a", "b", "c"}},
			policy:  def,
			want:    Assignment{"api": {"a", "c"}},
			moves:   []Move{{"api", "b", "", MoveNodeFailed}},
		},
		{
			name:    "vantage raised back once the node recovers",
			nodes:   idleNodes("a", "b", "c"),
			checks:  []PlacementCheck{{Name: "api", Nodes: 3}},
			current: Assignment{"api": {"a", "c"}},
			policy:  def,
			want:    Assignment{"api": {"a", "b", "c"}},
			moves:   []Move{{"api", "", "b", MoveNew}},
		},
		{
			name:    "vantage lowered drops the worst host",
			nodes:   nodesWithLoad(idleNodes("a", "b", "c"), "b", 0.2),
			checks:  []PlacementCheck{{Name: "api", Nodes: 2}},
			current: Assignment{"api": {"a", "b", "c"}},
			policy:  def,
			want:    Assignment{"api": {"a", "c"}},
			moves:   []Move{{"api", "b", "", MoveRemoved}},
		},
		{
			name: "vantage lowered while the remaining host is overloaded",
			nodes: []PlacementNode{
				{Name: "a", Alive: true, Load: 0.9}, {Name: "b", Alive: true}, {Name: "x", Alive: true, Load: 0.95},
			},
			checks:  []PlacementCheck{{Name: "api", Nodes: 1}},
			current: Assignment{"api": {"a", "x"}},
			policy:  def,
			want:    Assignment{"api": {"b"}},
			moves:   []Move{{"api", "a", "b", MoveRebalance}, {"api", "x", "", MoveRemoved}},
			steps:   []rebalanceStep{{"api", "a", "b", 0.91 - 0.01}},
		},
		{
			name: "rebalancing is capped, most beneficial (cheapest) moves first",
			nodes: []PlacementNode{
				{Name: "a", Alive: true, Load: 3}, {Name: "b", Alive: true}, {Name: "c", Alive: true},
			},
			checks: []PlacementCheck{
				{Name: "k1", Nodes: 1, Cost: 0.05}, {Name: "k2", Nodes: 1, Cost: 0.04},
				{Name: "k3", Nodes: 1, Cost: 0.03}, {Name: "k4", Nodes: 1, Cost: 0.02},
			},
			current: Assignment{"k1": {"a"}, "k2": {"a"}, "k3": {"a"}, "k4": {"a"}},
			policy:  PlacementPolicy{Margin: 0.25, MaxMoves: 2},
			want:    Assignment{"k1": {"a"}, "k2": {"a"}, "k3": {"c"}, "k4": {"b"}},
			moves:   []Move{{"k3", "a", "c", MoveRebalance}, {"k4", "a", "b", MoveRebalance}},
			steps:   []rebalanceStep{{"k4", "a", "b", 3.14 - 0.02}, {"k3", "a", "c", 3.12 - 0.03}},
		},
		{
			name:    "MaxMoves 0 disables rebalancing",
			nodes:   nodesWithLoad(idleNodes("a", "b"), "a", 5),
			checks:  placementChecks("c1"),
			current: Assignment{"c1": {"a"}},
			policy:  PlacementPolicy{Margin: 0.25},
			want:    Assignment{"c1": {"a"}},
		},
		{
			name:    "rebalancing does not count the moves of new slots",
			nodes:   nodesWithLoad(idleNodes("a", "b"), "a", 5),
			checks:  placementChecks("c1", "c2"),
			current: Assignment{"c1": {"a"}},
			policy:  PlacementPolicy{Margin: 0.25},
			want:    Assignment{"c1": {"a"}, "c2": {"b"}},
			moves:   []Move{{"c2", "", "b", MoveNew}},
		},
		{
			name:    "removed checks are dropped, from dead nodes too",
			nodes:   nodesWithStatus(idleNodes("a", "b"), "b", false),
			checks:  placementChecks("c1"),
			current: Assignment{"c1": {"a"}, "gone": {"b", "a"}},
			policy:  def,
			want:    Assignment{"c1": {"a"}},
			moves:   []Move{{"gone", "a", "", MoveRemoved}, {"gone", "b", "", MoveRemoved}},
		},
		{
			name:    "no alive node: every check is listed with no node",
			nodes:   nodesWithStatus(idleNodes("a"), "a", false),
			checks:  placementChecks("c1", "c2"),
			current: Assignment{"c1": {"a"}},
			policy:  def,
			want:    Assignment{"c1": {}, "c2": {}},
			moves:   []Move{{"c1", "a", "", MoveNodeFailed}},
		},
		{
			name:   "a node with a poor health score is avoided",
			nodes:  []PlacementNode{{Name: "a", Alive: true, Health: 3}, {Name: "b", Alive: true, Load: 0.2}},
			checks: placementChecks("c1"),
			policy: def,
			want:   Assignment{"c1": {"b"}},
			moves:  []Move{{"c1", "", "b", MoveNew}},
		},
		{
			name: "duplicate entries merge pessimistically; garbage in current is cleaned",
			nodes: []PlacementNode{
				{Name: "a", Alive: true}, {Name: "a", Alive: false}, {Name: "b", Alive: true},
				{Name: "", Alive: true}, {Name: "c", Alive: true, Load: 0.1}, {Name: "c", Alive: true, Load: 0.9},
			},
			checks:  []PlacementCheck{{Name: "c1", Nodes: 1}, {Name: "c1", Nodes: 2}, {Name: "c2", Nodes: 0}},
			current: Assignment{"c1": {"b", "b", ""}},
			policy:  def,
			want:    Assignment{"c1": {"b", "c"}, "c2": {"b"}},
			moves:   []Move{{"c1", "", "c", MoveNew}, {"c2", "", "b", MoveNew}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneAssignment(tc.current)
			got, moves, steps := placeTrace(tc.nodes, tc.checks, tc.current, tc.policy)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("assignment:\n got %v\nwant %v", got, tc.want)
			}
			if !slices.Equal(moves, tc.moves) {
				t.Errorf("moves:\n got %v\nwant %v", moves, tc.moves)
			}
			if tc.steps != nil && !rebalanceStepsEqual(steps, tc.steps) {
				t.Errorf("rebalancing steps:\n got %v\nwant %v", steps, tc.steps)
			}
			if !reflect.DeepEqual(tc.current, before) {
				t.Errorf("Place modified its input: %v, was %v", tc.current, before)
			}
			rebalances := 0
			for _, m := range moves {
				if m.Reason == MoveRebalance {
					rebalances++
				}
			}
			if rebalances == tc.policy.MaxMoves && rebalances > 0 {
				return // capped: the next call may move more (TestPlaceCappedRebalanceConverges)
			}
			again, moves := Place(tc.nodes, tc.checks, got, tc.policy)
			if len(moves) != 0 || !reflect.DeepEqual(again, got) {
				t.Errorf("not stable: second call moved %v to %v", moves, again)
			}
		})
	}
}

func TestPlaceCappedRebalanceConverges(t *testing.T) {
	nodes := nodesWithLoad(idleNodes("a", "b", "c"), "a", 0.1)
	var checks []PlacementCheck
	cur := Assignment{}
	for i := range 9 {
		name := fmt.Sprintf("c%d", i)
		checks = append(checks, PlacementCheck{Name: name, Nodes: 1})
		cur[name] = []string{"a"}
	}
	p := PlacementPolicy{Margin: 0.1, MaxMoves: 2}
	var perCall []int
	for range 10 {
		var moves []Move
		cur, moves = Place(nodes, checks, cur, p)
		if len(moves) == 0 {
			break
		}
		perCall = append(perCall, len(moves))
	}
	// a starts at 0.1 + 9×0.01: the sixth move (a 0.14 → c 0.02+0.01) still gains 0.11,
	// the seventh would gain only 0.13 − 0.04 = 0.09, within the margin.
	if want := []int{2, 2, 2}; !slices.Equal(perCall, want) {
		t.Errorf("moves per call = %v, want %v", perCall, want)
	}
	if got := cur.PerNode(); !maps.Equal(got, map[string]int{"a": 3, "b": 3, "c": 3}) {
		t.Errorf("final spread %v, want a:3 b:3 c:3", got)
	}
}

func TestLeastLoaded(t *testing.T) {
	nodes := []PlacementNode{
		{Name: "d", Alive: true, Load: 0.1},
		{Name: "a", Alive: true, Load: 0.5},
		{Name: "c", Alive: false},
		{Name: "b", Alive: true, Load: 0.1},
		{Name: "e", Alive: true, Health: 2},
	}
	p := DefaultPlacementPolicy()
	tests := []struct {
		n       int
		exclude map[string]bool
		want    []string
	}{
		{n: 1, want: []string{"b"}},
		{n: 3, want: []string{"b", "d", "e"}},
		{n: 9, want: []string{"b", "d", "e", "a"}},
		{n: 2, exclude: map[string]bool{"b": true}, want: []string{"d", "e"}},
		{n: 0, want: nil},
	}
	for _, tc := range tests {
		if got := LeastLoaded(nodes, tc.n, tc.exclude, p); !slices.Equal(got, tc.want) {
			t.Errorf("LeastLoaded(n=%d, exclude=%v) = %v, want %v", tc.n, tc.exclude, got, tc.want)
		}
	}
}

func TestSpread(t *testing.T) {
	p := PlacementPolicy{}
	tests := []struct {
		name    string
		nodes   []PlacementNode
		targets int
		want    []SweepShare
	}{
		{"proportional to spare capacity", []PlacementNode{
			{Name: "c", Alive: true, Load: 1.5}, {Name: "b", Alive: true, Load: 0.5}, {Name: "a", Alive: true},
		}, 9, []SweepShare{{"a", 6}, {"b", 3}}},
		{"remainder to the lower name", idleNodes("b", "a", "c"), 4, []SweepShare{{"a", 2}, {"b", 1}, {"c", 1}}},
		{"all saturated share equally", []PlacementNode{
			{Name: "a", Alive: true, Load: 2}, {Name: "b", Alive: true, Load: 3},
		}, 3, []SweepShare{{"a", 2}, {"b", 1}}},
		{"dead nodes get nothing", nodesWithStatus(idleNodes("a", "b"), "a", false), 5, []SweepShare{{"b", 5}}},
		{"no alive node", nodesWithStatus(idleNodes("a"), "a", false), 5, nil},
		{"no target", idleNodes("a"), 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Spread(tc.nodes, tc.targets, p); !slices.Equal(got, tc.want) {
				t.Errorf("Spread = %v, want %v", got, tc.want)
			}
		})
	}
}

// placeInput is one random Place call.
type placeInput struct {
	nodes   []PlacementNode
	checks  []PlacementCheck
	current Assignment
	policy  PlacementPolicy
}

func drawPlaceInput(t *rapid.T) placeInput {
	nodePool := []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"}
	checkPool := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11"}
	var in placeInput
	for _, name := range nodePool[:rapid.IntRange(0, len(nodePool)).Draw(t, "nodes")] {
		copies := 1
		if rapid.IntRange(0, 9).Draw(t, "dup") == 0 {
			copies = 2
		}
		for range copies {
			in.nodes = append(in.nodes, PlacementNode{
				Name:   name,
				Alive:  rapid.IntRange(0, 3).Draw(t, "alive") > 0,
				Load:   rapid.SampledFrom([]float64{0, 0.1, 0.3, 0.7, 1.5}).Draw(t, "load") + rapid.Float64Range(0, 0.05).Draw(t, "jitter"),
				Health: rapid.IntRange(0, 3).Draw(t, "health"),
			})
		}
	}
	for _, name := range checkPool {
		if rapid.Bool().Draw(t, "defined") {
			in.checks = append(in.checks, PlacementCheck{
				Name:  name,
				Nodes: rapid.IntRange(0, 4).Draw(t, "vantage"),
				Cost:  rapid.SampledFrom([]float64{0, 0, 0.001, 0.02, 0.1, 0.3}).Draw(t, "cost"),
			})
		}
	}
	hosts := append(slices.Clone(nodePool), "ghost")
	in.current = Assignment{}
	for _, name := range checkPool {
		if rapid.Bool().Draw(t, "assigned") {
			in.current[name] = rapid.SliceOfN(rapid.SampledFrom(hosts), 0, 4).Draw(t, "hosts")
		}
	}
	if rapid.Bool().Draw(t, "from earlier placement") {
		// The usual case: current is what Place gave earlier, for other loads and statuses.
		earlier := slices.Clone(in.nodes)
		for i := range earlier {
			earlier[i].Alive = rapid.IntRange(0, 3).Draw(t, "earlier alive") > 0
			earlier[i].Load = rapid.Float64Range(0, 1).Draw(t, "earlier load")
		}
		in.current, _ = Place(earlier, in.checks, in.current, DefaultPlacementPolicy())
		if rapid.Bool().Draw(t, "vantage changed") && len(in.checks) > 0 {
			i := rapid.IntRange(0, len(in.checks)-1).Draw(t, "check")
			in.checks[i].Nodes = rapid.IntRange(1, 4).Draw(t, "new vantage")
		}
	}
	in.policy = PlacementPolicy{
		Margin:       rapid.SampledFrom([]float64{0, 0.05, 0.25}).Draw(t, "margin"),
		MaxMoves:     rapid.IntRange(0, 4).Draw(t, "maxMoves"),
		HealthWeight: rapid.SampledFrom([]float64{0, 0.1}).Draw(t, "healthWeight"),
	}
	return in
}

// placementScores is an independent rendering of the scoring rule, for checking Place's gains.
func placementScores(in placeInput, a Assignment) map[string]float64 {
	alive := aliveNodeSet(in.nodes)
	scores := map[string]float64{}
	for name := range alive {
		var load float64
		health := 0
		for _, n := range in.nodes {
			if n.Name == name {
				load, health = max(load, n.Load), max(health, n.Health)
			}
		}
		scores[name] = load + in.policy.HealthWeight*float64(health)
	}
	costs := placementCosts(in.checks)
	for check, nodes := range a {
		for _, n := range nodes {
			scores[n] += costs[check]
		}
	}
	return scores
}

func aliveNodeSet(nodes []PlacementNode) map[string]bool {
	alive := map[string]bool{}
	dead := map[string]bool{}
	for _, n := range nodes {
		if n.Alive {
			alive[n.Name] = true
		} else {
			dead[n.Name] = true
		}
	}
	for n := range dead {
		delete(alive, n)
	}
	return alive
}

func placementCosts(checks []PlacementCheck) map[string]float64 {
	costs := map[string]float64{}
	for _, c := range checks {
		cost := c.Cost
		if cost <= 0 {
			cost = DefaultCheckCost
		}
		costs[c.Name] = max(costs[c.Name], cost)
	}
	return costs
}

func TestPlaceProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := drawPlaceInput(t)
		before := cloneAssignment(in.current)
		got, moves, steps := placeTrace(in.nodes, in.checks, in.current, in.policy)
		if !reflect.DeepEqual(in.current, before) {
			t.Fatalf("Place modified its input")
		}
		alive := aliveNodeSet(in.nodes)
		want := map[string]int{}
		for _, c := range in.checks {
			want[c.Name] = max(want[c.Name], min(max(c.Nodes, 1), len(alive)))
		}

		// Every defined check, and only those, on exactly min(vantage, alive) distinct alive nodes.
		if len(got) != len(want) {
			t.Fatalf("assignment has %d checks, want %d: %v", len(got), len(want), got)
		}
		for name, n := range want {
			nodes, ok := got[name]
			if !ok || nodes == nil {
				t.Fatalf("check %s missing from %v", name, got)
			}
			if len(nodes) != n || !slices.IsSorted(nodes) || len(slices.Compact(slices.Clone(nodes))) != n {
				t.Fatalf("check %s on %v, want %d distinct sorted nodes", name, nodes, n)
			}
			for _, node := range nodes {
				if !alive[node] {
					t.Fatalf("check %s on non-alive node %q", name, node)
				}
			}
		}

		// The moves are net and complete: replayed on the current assignment, in order,
		// they give the result. Hosts that failed all leave as node_failed; alive hosts
		// leave only as rebalance (at most MaxMoves) or, when fewer are needed, as removed.
		state := map[string]map[string]bool{}
		failed, trimmed := map[string]int{}, map[string]int{}
		for name, nodes := range in.current {
			state[name] = map[string]bool{}
			for _, n := range nodes {
				if n != "" {
					state[name][n] = true
				}
			}
			for n := range state[name] {
				if !alive[n] {
					failed[name]++
				}
			}
			if w, defined := want[name]; defined {
				trimmed[name] = max(0, len(state[name])-failed[name]-w)
			}
		}
		rebalances := 0
		for _, m := range moves {
			_, defined := want[m.Check]
			switch m.Reason {
			case MoveNew:
				if m.From != "" || m.To == "" {
					t.Fatalf("bad new move %+v", m)
				}
			case MoveNodeFailed:
				if m.From == "" || alive[m.From] {
					t.Fatalf("node_failed move from an alive node: %+v", m)
				}
				failed[m.Check]--
			case MoveRemoved:
				if m.To != "" {
					t.Fatalf("removal with a destination: %+v", m)
				}
				if defined {
					if !alive[m.From] {
						t.Fatalf("trim of a failed node (should be node_failed): %+v", m)
					}
					trimmed[m.Check]--
				}
			case MoveRebalance:
				rebalances++
				if !alive[m.From] || !alive[m.To] {
					t.Fatalf("rebalance involving a non-alive node: %+v", m)
				}
			default:
				t.Fatalf("unknown reason in %+v", m)
			}
			if state[m.Check] == nil {
				state[m.Check] = map[string]bool{}
			}
			if m.From != "" {
				if !state[m.Check][m.From] {
					t.Fatalf("move %+v from a node not holding the check", m)
				}
				delete(state[m.Check], m.From)
			}
			if m.To != "" {
				if state[m.Check][m.To] {
					t.Fatalf("move %+v to a node already holding the check", m)
				}
				state[m.Check][m.To] = true
			}
		}
		for name := range want {
			if failed[name] != 0 || trimmed[name] != 0 {
				t.Fatalf("check %s: %d failed hosts and %d extra hosts not accounted for in %v",
					name, failed[name], trimmed[name], moves)
			}
		}
		if rebalances > in.policy.MaxMoves {
			t.Fatalf("%d rebalance moves, cap %d", rebalances, in.policy.MaxMoves)
		}
		replayed := assignmentOf(state)
		for name, nodes := range got {
			if !slices.Equal(replayed[name], nodes) {
				t.Fatalf("replaying moves gives %s on %v, Place says %v", name, replayed[name], nodes)
			}
		}
		for name, nodes := range replayed {
			if _, ok := got[name]; !ok && len(nodes) > 0 {
				t.Fatalf("replaying moves leaves removed check %s on %v", name, nodes)
			}
		}

		// Each rebalancing rebalanceStep, checked against an independent scoring and brute force:
		// it gained what it says and more than the margin, no move allowed by the budget
		// gained more, and when the steps ended no allowed move gained more than the margin.
		// The steps are undone from the result to find where they started.
		stepState := cloneAssignment(got)
		for i := len(steps) - 1; i >= 0; i-- {
			s := steps[i]
			k := slices.Index(stepState[s.check], s.to)
			if k < 0 || slices.Contains(stepState[s.check], s.from) {
				t.Fatalf("rebalanceStep %+v cannot be undone from %v", s, stepState[s.check])
			}
			stepState[s.check][k] = s.from
		}
		orig := map[string]map[string]bool{} // alive hosts in current, per defined check
		for name := range want {
			orig[name] = map[string]bool{}
			for _, n := range in.current[name] {
				if alive[n] {
					orig[name][n] = true
				}
			}
		}
		isOrig := func(check, node string) int {
			if orig[check][node] {
				return 1
			}
			return 0
		}
		moved := 0 // original hosts left, less those trimmed: the reported rebalance moves
		for name, nodes := range stepState {
			left := 0
			for n := range orig[name] {
				if !slices.Contains(nodes, n) {
					left++
				}
			}
			moved += left - max(0, len(orig[name])-want[name])
		}
		if moved != 0 {
			t.Fatalf("before rebalancing, %d original hosts already left: %v from %v", moved, stepState, in.current)
		}
		costs := placementCosts(in.checks)
		bestAllowed := func(scores map[string]float64) (best float64, what string) {
			best = math.Inf(-1)
			for check, nodes := range stepState {
				for _, from := range nodes {
					for to := range alive {
						if slices.Contains(nodes, to) || moved+isOrig(check, from)-isOrig(check, to) > in.policy.MaxMoves {
							continue
						}
						if gain := scores[from] - scores[to] - costs[check]; gain > best {
							best, what = gain, fmt.Sprintf("%s %s→%s", check, from, to)
						}
					}
				}
			}
			return best, what
		}
		for _, s := range steps {
			scores := placementScores(in, stepState)
			gain := scores[s.from] - scores[s.to] - costs[s.check]
			if !(s.gain > max(in.policy.Margin, 1e-6)) || math.Abs(gain-s.gain) > 1e-9 {
				t.Fatalf("rebalanceStep %+v: independent gain %v, margin %v", s, gain, in.policy.Margin)
			}
			delta := isOrig(s.check, s.from) - isOrig(s.check, s.to)
			if moved+delta > in.policy.MaxMoves {
				t.Fatalf("rebalanceStep %+v exceeds the budget: %d moved already", s, moved)
			}
			if best, what := bestAllowed(scores); best > s.gain+1e-9 {
				t.Fatalf("rebalanceStep %+v gains %v, but %s would have gained %v", s, s.gain, what, best)
			}
			k := slices.Index(stepState[s.check], s.from)
			stepState[s.check][k] = s.to
			moved += delta
		}
		if best, what := bestAllowed(placementScores(in, stepState)); best > max(in.policy.Margin, 1e-6)+1e-9 {
			t.Fatalf("rebalancing stopped, but %s would gain %v", what, best)
		}
		if moved != rebalances {
			t.Fatalf("steps moved %d original hosts, %d rebalance moves reported", moved, rebalances)
		}

		// Stable: a second call makes no move unless the first one used its whole budget;
		// then repeated calls converge, by rebalancing only.
		again, moves2 := Place(in.nodes, in.checks, got, in.policy)
		if rebalances < in.policy.MaxMoves || in.policy.MaxMoves == 0 {
			if len(moves2) != 0 || !reflect.DeepEqual(again, got) {
				t.Fatalf("second call moved %v", moves2)
			}
		}
		for i := 0; len(moves2) > 0; i++ {
			if i > 100 {
				t.Fatalf("no fixpoint after 100 calls, still moving %v", moves2)
			}
			for _, m := range moves2 {
				if m.Reason != MoveRebalance {
					t.Fatalf("later call made a %s move: %+v", m.Reason, m)
				}
			}
			again, moves2 = Place(in.nodes, in.checks, again, in.policy)
		}
	})
}

func TestPlaceIgnoresInputOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := drawPlaceInput(t)
		got, moves := Place(in.nodes, in.checks, in.current, in.policy)

		nodes := rapid.Permutation(in.nodes).Draw(t, "nodes order")
		checks := rapid.Permutation(in.checks).Draw(t, "checks order")
		current := Assignment{}
		for name, hosts := range in.current {
			current[name] = rapid.Permutation(hosts).Draw(t, "hosts order")
		}
		got2, moves2 := Place(nodes, checks, current, in.policy)
		if !reflect.DeepEqual(got, got2) {
			t.Fatalf("assignment depends on input order:\n%v\n%v", got, got2)
		}
		if !reflect.DeepEqual(moves, moves2) {
			t.Fatalf("moves depend on input order:\n%v\n%v", moves, moves2)
		}

		exclude := map[string]bool{"n1": true}
		n := rapid.IntRange(0, 5).Draw(t, "n")
		if a, b := LeastLoaded(in.nodes, n, exclude, in.policy), LeastLoaded(nodes, n, exclude, in.policy); !slices.Equal(a, b) {
			t.Fatalf("LeastLoaded depends on input order: %v, %v", a, b)
		}
		targets := rapid.IntRange(0, 50).Draw(t, "targets")
		if a, b := Spread(in.nodes, targets, in.policy), Spread(nodes, targets, in.policy); !slices.Equal(a, b) {
			t.Fatalf("Spread depends on input order: %v, %v", a, b)
		}
	})
}

func TestLeastLoadedAndSpreadProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := drawPlaceInput(t)
		alive := aliveNodeSet(in.nodes)
		scores := placementScores(in, nil)

		exclude := map[string]bool{"n0": true}
		n := rapid.IntRange(0, 9).Draw(t, "n")
		best := LeastLoaded(in.nodes, n, exclude, in.policy)
		candidates := len(alive)
		if alive["n0"] {
			candidates--
		}
		if len(best) != min(n, candidates) {
			t.Fatalf("LeastLoaded(%d) = %v, %d candidates", n, best, candidates)
		}
		for i, name := range best {
			if !alive[name] || exclude[name] {
				t.Fatalf("LeastLoaded returned %q (alive %v, excluded %v)", name, alive[name], exclude[name])
			}
			if i > 0 && scores[best[i-1]] > scores[name]+1e-12 {
				t.Fatalf("LeastLoaded not best first: %v with scores %v", best, scores)
			}
		}
		for name := range alive {
			if !exclude[name] && !slices.Contains(best, name) && len(best) > 0 && scores[name] < scores[best[len(best)-1]]-1e-12 {
				t.Fatalf("LeastLoaded skipped better node %s: %v with scores %v", name, best, scores)
			}
		}

		targets := rapid.IntRange(0, 100).Draw(t, "targets")
		shares := Spread(in.nodes, targets, in.policy)
		total := 0
		count := map[string]int{}
		for i, s := range shares {
			if !alive[s.Node] || s.Count <= 0 || (i > 0 && shares[i-1].Node >= s.Node) {
				t.Fatalf("bad shares %v (alive %v)", shares, alive)
			}
			total += s.Count
			count[s.Node] = s.Count
		}
		if len(alive) > 0 && total != targets || len(alive) == 0 && total != 0 {
			t.Fatalf("shares %v add up to %d, want %d", shares, total, targets)
		}
		// More spare capacity never means fewer targets.
		for a := range alive {
			for b := range alive {
				if max(0, 1-scores[a]) > max(0, 1-scores[b])+1e-9 && count[a] < count[b] {
					t.Fatalf("%s (score %v) got %d, %s (score %v) got %d", a, scores[a], count[a], b, scores[b], count[b])
				}
			}
		}
	})
}

func FuzzPlacePolicy(f *testing.F) {
	f.Add(0.25, 10, 0.1, 0.5, 0.01)
	f.Add(math.NaN(), -1, math.Inf(1), math.Inf(1), math.NaN())
	f.Add(0.0, 3, 0.0, 0.0, 1e-300)
	f.Add(-1.0, 1000, -1.0, -5.0, math.Inf(1))
	f.Fuzz(func(t *testing.T, margin float64, maxMoves int, healthWeight, load, cost float64) {
		nodes := []PlacementNode{{Name: "a", Alive: true, Load: load, Health: 2}, {Name: "b", Alive: true}}
		checks := []PlacementCheck{{Name: "x", Nodes: 2, Cost: cost}, {Name: "y", Nodes: 1, Cost: cost}}
		p := PlacementPolicy{Margin: margin, MaxMoves: maxMoves % 100, HealthWeight: healthWeight}
		got, _ := Place(nodes, checks, Assignment{"y": {"a"}}, p)
		if len(got["x"]) != 2 || len(got["y"]) != 1 {
			t.Fatalf("bad assignment %v", got)
		}
		for range 50 {
			var moves []Move
			if got, moves = Place(nodes, checks, got, p); len(moves) == 0 {
				return
			}
		}
		t.Fatalf("no fixpoint for policy %+v", p)
	})
}

func cloneAssignment(a Assignment) Assignment {
	if a == nil {
		return nil
	}
	out := Assignment{}
	for k, v := range a {
		out[k] = slices.Clone(v)
	}
	return out
}

func assignmentOf(state map[string]map[string]bool) Assignment {
	out := Assignment{}
	for name, set := range state {
		out[name] = slices.Sorted(maps.Keys(set))
	}
	return out
}

func rebalanceStepsEqual(got, want []rebalanceStep) bool {
	return slices.EqualFunc(got, want, func(g, w rebalanceStep) bool {
		return g.check == w.check && g.from == w.from && g.to == w.to && math.Abs(g.gain-w.gain) < 1e-9
	})
}

func BenchmarkPlace(b *testing.B) {
	nodes := make([]PlacementNode, 50)
	for i := range nodes {
		nodes[i] = PlacementNode{Name: fmt.Sprintf("node-%02d", i), Alive: true, Load: float64(i%7) / 10}
	}
	checks := make([]PlacementCheck, 1000)
	for i := range checks {
		checks[i] = PlacementCheck{Name: fmt.Sprintf("check-%04d", i), Nodes: 1 + i%3, Cost: float64(i%5) / 500}
	}
	p := DefaultPlacementPolicy()
	placed, _ := Place(nodes, checks, nil, p)

	b.Run("from-scratch", func(b *testing.B) {
		for b.Loop() {
			Place(nodes, checks, nil, p)
		}
	})
	b.Run("steady", func(b *testing.B) {
		for b.Loop() {
			Place(nodes, checks, placed, p)
		}
	})
	// A node dies and load shifts: forced moves plus a full rebalance budget.
	shifted := nodesWithStatus(nodes, "node-07", false)
	for i := range shifted {
		shifted[i].Load = float64((i+3)%7) / 5
	}
	b.Run("node-failed", func(b *testing.B) {
		for b.Loop() {
			Place(shifted, checks, placed, p)
		}
	})
}
