// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Market} from "../../src/Market.sol";
import {JuryArbiter} from "../../src/JuryArbiter.sol";
import {TestToken} from "../../src/TestToken.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";
import {Merkle} from "../utils/Merkle.sol";
import {Test} from "../utils/Test.sol";

/// @notice Drives the market through random sequences of every user action (stakes, jobs,
/// rounds, claims, challenges, jury votes, timeouts, withdrawals) and keeps ghost records of
/// every token that entered or left the market and of every payout, slash and refund.
contract MarketHandler is Test {
    uint256 internal constant REWARD = 3e6;
    uint256 internal constant STEPS = 3;

    TestToken public immutable token;
    Market public immutable market;
    JuryArbiter public immutable jury;

    uint256[3] internal workerKeys = [uint256(0xA0A1), 0xA0A2, 0xA0A3];
    address[3] public workers;
    address[6] public verifiers;
    address[2] public owners = [address(0x0E1), address(0x0E2)];
    address public constant COORDINATOR = address(0xC0);

    struct RoundRef {
        uint256 jobId;
        uint256 round;
        uint256 numUnits;
        bytes32[] leafHashes;
        address[] leafWorkers;
        uint256[] amounts;
    }

    uint256[] public jobIds;
    RoundRef[] internal _rounds;
    uint256[] public disputeIds;
    mapping(uint256 jobId => uint256) public nextRound;

    // ghost records
    uint256 public ghostIn; // tokens transferred into the market
    uint256 public ghostOut; // tokens transferred out of the market
    mapping(uint256 jobId => uint256) public ghostFunded; // budget + top-ups
    mapping(uint256 jobId => uint256) public ghostCommitted; // round totals committed
    mapping(uint256 jobId => uint256) public ghostReturned; // revoked leaf amounts back to escrow
    mapping(uint256 jobId => uint256) public ghostRefunded; // paid to the owner by closeJob
    mapping(bytes32 leaf => uint256) public ghostClaims; // successful claims per leaf
    bool public ghostDoublePay; // a leaf was paid twice
    bool public ghostOverSlash; // a slash took more than the stake
    uint256 public ghostSlashes;
    uint256 public ghostClaimCount;
    uint256 public ghostRulings;

    constructor(TestToken token_, Market market_, JuryArbiter jury_) {
        token = token_;
        market = market_;
        jury = jury_;
        for (uint256 i; i < 3; ++i) {
            workers[i] = vm.addr(workerKeys[i]);
        }
        for (uint256 i; i < 6; ++i) {
            verifiers[i] = address(uint160(0xD000 + i));
        }
    }

    // ------------------------------------------------------------------ views for the invariants

    function jobCount() external view returns (uint256) {
        return jobIds.length;
    }

    function roundCount() external view returns (uint256) {
        return _rounds.length;
    }

    function roundAt(uint256 i) external view returns (uint256 jobId, uint256 round, bytes32[] memory leafHashes) {
        RoundRef storage r = _rounds[i];
        return (r.jobId, r.round, r.leafHashes);
    }

    function disputeCount() external view returns (uint256) {
        return disputeIds.length;
    }

    function actors() external view returns (address[] memory a) {
        a = new address[](11);
        for (uint256 i; i < 3; ++i) {
            a[i] = workers[i];
        }
        for (uint256 i; i < 6; ++i) {
            a[3 + i] = verifiers[i];
        }
        a[9] = owners[0];
        a[10] = owners[1];
    }

    // ------------------------------------------------------------------ time

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 1, 2 days));
    }

    // ------------------------------------------------------------------ stakes

    function stake(uint256 who, bool verifier, uint256 amount) public {
        address a = verifier ? verifiers[who % 6] : workers[who % 3];
        uint8 role = verifier ? 2 : 1;
        amount = bound(amount, 1, 300e6);
        _fund(a, amount);
        vm.prank(a);
        market.stake(role, amount);
        ghostIn += amount;
    }

    function requestUnstake(uint256 who, bool verifier, uint256 amount) external {
        address a = verifier ? verifiers[who % 6] : workers[who % 3];
        uint8 role = verifier ? 2 : 1;
        uint256 active = market.getStake(a, role).active;
        if (active == 0) return;
        amount = bound(amount, 1, active);
        vm.prank(a);
        market.requestUnstake(role, amount);
    }

    function withdrawStake(uint256 who, bool verifier) external {
        address a = verifier ? verifiers[who % 6] : workers[who % 3];
        uint8 role = verifier ? 2 : 1;
        IMarket.StakeView memory s = market.getStake(a, role);
        if (s.unbonding == 0 || block.timestamp < s.unlockAt || market.openDisputesOf(a) != 0) return;
        vm.prank(a);
        market.withdrawStake(role);
        ghostOut += s.unbonding;
    }

    function withdrawPayout(uint256 who) external {
        address a = who % 2 == 0 ? workers[who % 3] : verifiers[who % 6];
        uint256 amount = market.payoutOf(a);
        if (amount == 0) return;
        vm.prank(a);
        market.withdrawPayout();
        ghostOut += amount;
    }

    function withdrawJurorReward(uint256 who) external {
        address a = verifiers[who % 6];
        if (jury.rewardOf(a) == 0) return;
        vm.prank(a);
        jury.withdrawReward();
    }

    // ------------------------------------------------------------------ jobs

    function postJob(uint256 who, uint256 budget, uint256 maxUnits) public {
        address o = owners[who % 2];
        budget = bound(budget, 1, 40 * REWARD);
        maxUnits = bound(maxUnits, 1, 12);
        _fund(o, budget);
        vm.prank(o);
        uint256 jobId = market.postJob(
            keccak256(abi.encode("spec", jobIds.length)),
            budget,
            REWARD,
            maxUnits,
            COORDINATOR,
            1 days,
            uint64(block.timestamp + 5 days)
        );
        jobIds.push(jobId);
        ghostIn += budget;
        ghostFunded[jobId] += budget;
    }

    function topUp(uint256 jobSeed, uint256 amount) external {
        if (jobIds.length == 0) return;
        uint256 jobId = jobIds[jobSeed % jobIds.length];
        if (market.getJob(jobId).status != IMarket.JobStatus.Open) return;
        amount = bound(amount, 1, 10 * REWARD);
        _fund(address(this), amount);
        market.topUp(jobId, amount);
        ghostIn += amount;
        ghostFunded[jobId] += amount;
    }

    function completeJob(uint256 jobSeed) external {
        if (jobIds.length == 0) return;
        uint256 jobId = jobIds[jobSeed % jobIds.length];
        if (market.getJob(jobId).status != IMarket.JobStatus.Open) return;
        vm.prank(COORDINATOR);
        market.completeJob(jobId);
    }

    function closeJob(uint256 jobSeed) external {
        if (jobIds.length == 0) return;
        uint256 jobId = jobIds[jobSeed % jobIds.length];
        IMarket.JobView memory j = market.getJob(jobId);
        if (j.status == IMarket.JobStatus.Open && block.timestamp < j.deadline) return;
        vm.prank(j.owner);
        market.closeJob(jobId);
        ghostOut += j.escrow;
        ghostRefunded[jobId] += j.escrow;
    }

    // ------------------------------------------------------------------ rounds

    function commitRound(uint256 jobSeed, uint256 numUnits, uint256 amountSeed) external {
        uint256 jobId = _openJob(jobSeed);
        IMarket.JobView memory j = market.getJob(jobId);
        uint256 room = j.maxUnits - j.unitsCommitted; // > 0: _openJob checked
        numUnits = bound(numUnits, 1, room < 4 ? room : 4);
        uint256 round = nextRound[jobId]++;
        RoundRef storage r = _rounds.push();
        r.jobId = jobId;
        r.round = round;
        r.numUnits = numUnits;
        uint256 total;
        for (uint256 k; k < numUnits; ++k) {
            // each leaf pays at most REWARD and the round at most the escrow
            uint256 left = j.escrow - total;
            uint256 amount = uint256(keccak256(abi.encode(amountSeed, k))) % ((left < REWARD ? left : REWARD) + 1);
            address w = workers[(amountSeed % 3 + k) % 3];
            (, bytes32 resultHash,) = _result(jobId, round, k);
            r.leafHashes.push(keccak256(bytes.concat(keccak256(abi.encode(jobId, round, k, w, amount, resultHash)))));
            r.leafWorkers.push(w);
            r.amounts.push(amount);
            total += amount;
        }
        vm.prank(COORDINATOR);
        market.commitRound(jobId, round, Merkle.root(r.leafHashes), total, numUnits);
        ghostCommitted[jobId] += total;
    }

    function finalizeRound(uint256 roundSeed) external {
        if (_rounds.length == 0) return;
        RoundRef storage r = _rounds[roundSeed % _rounds.length];
        IMarket.RoundView memory v = market.getRound(r.jobId, r.round);
        if (v.status != IMarket.RoundStatus.Committed || block.timestamp < v.challengeEnd || v.openDisputes != 0) {
            return;
        }
        market.finalizeRound(r.jobId, r.round);
    }

    /// @dev Tries any leaf, including claimed and revoked ones: those must revert.
    function claim(uint256 roundSeed, uint256 unitSeed) external {
        if (_rounds.length == 0) return;
        RoundRef storage r = _rounds[roundSeed % _rounds.length];
        uint256 k = unitSeed % r.numUnits;
        IMarket.RoundView memory v = market.getRound(r.jobId, r.round);
        if (v.status == IMarket.RoundStatus.Committed && v.openDisputes == 0) {
            if (block.timestamp < v.challengeEnd) vm.warp(v.challengeEnd);
            market.finalizeRound(r.jobId, r.round);
        }
        (, bytes32 resultHash,) = _result(r.jobId, r.round, k);
        bytes32 leaf = r.leafHashes[k];
        bytes32[] memory proof = Merkle.proof(r.leafHashes, k);
        try market.claim(r.jobId, r.round, k, r.leafWorkers[k], r.amounts[k], resultHash, proof) {
            if (ghostClaims[leaf] != 0) ghostDoublePay = true;
            if (market.getRound(r.jobId, r.round).status != IMarket.RoundStatus.Finalized) ghostDoublePay = true;
            ++ghostClaims[leaf];
            ++ghostClaimCount;
            ghostOut += r.amounts[k];
        } catch {}
    }

    // ------------------------------------------------------------------ disputes

    /// @dev Looks for a round still in its window with an unchallenged leaf; stakes the
    /// challenger first when it has too little verifier stake.
    function challenge(uint256 roundSeed, uint256 unitSeed, uint256 stepSeed, uint256 who) external {
        uint256 n = _rounds.length;
        for (uint256 t; t < n; ++t) {
            RoundRef storage r = _rounds[(roundSeed % n + t) % n];
            IMarket.RoundView memory v = market.getRound(r.jobId, r.round);
            if (v.status != IMarket.RoundStatus.Committed || block.timestamp >= v.challengeEnd) continue;
            for (uint256 u; u < r.numUnits; ++u) {
                uint256 k = (unitSeed % r.numUnits + u) % r.numUnits;
                if (market.leafStatus(r.leafHashes[k]) != IMarket.LeafStatus.None) continue;
                address challenger = verifiers[who % 6];
                if (challenger == r.leafWorkers[k]) continue;
                uint256 active = market.getStake(challenger, 2).active;
                if (active < market.minStake(2)) stake(who % 6, true, market.minStake(2) - active);
                IMarket.Evidence memory ev = _evidence(r, k, stepSeed % STEPS);
                uint256 bond = market.params().challengeBond;
                _fund(challenger, bond);
                vm.prank(challenger);
                uint256 id = market.challenge(ev);
                disputeIds.push(id);
                ghostIn += bond;
                return;
            }
        }
    }

    /// @dev Every drawn juror votes (choice 0 = stays silent), then the dispute is resolved.
    function juryRules(uint256 disputeSeed, uint256 votesSeed) external {
        uint256 id = _openDispute(disputeSeed);
        if (id == 0) return;
        IMarket.DisputeView memory d = market.getDispute(id);
        uint256 arbiterId = d.arbiterDisputeId;
        uint64 commitDeadline = jury.getDispute(arbiterId).commitDeadline;
        if (jury.getDispute(arbiterId).commits != 0) return; // votes already under way
        if (block.timestamp < commitDeadline) {
            address[] memory js = jury.jurorsOf(arbiterId);
            uint8[] memory choices = new uint8[](js.length);
            for (uint256 i; i < js.length; ++i) {
                choices[i] = uint8(uint256(keccak256(abi.encode(votesSeed, i))) % 3);
                if (choices[i] == 0) continue;
                bytes32 c = jury.voteCommitment(arbiterId, js[i], choices[i], bytes32(i));
                vm.prank(js[i]);
                jury.commitVote(arbiterId, c);
            }
            vm.warp(commitDeadline);
            for (uint256 i; i < js.length; ++i) {
                if (choices[i] == 0) continue;
                vm.prank(js[i]);
                jury.revealVote(arbiterId, choices[i], bytes32(i));
            }
        }
        _resolveChecked(id, d, arbiterId, false);
    }

    function timeoutDispute(uint256 disputeSeed) external {
        uint256 id = _openDispute(disputeSeed);
        if (id == 0) return;
        IMarket.DisputeView memory d = market.getDispute(id);
        uint256 at = d.openedAt + market.params().disputeTimeout;
        if (block.timestamp < at) vm.warp(at);
        _resolveChecked(id, d, d.arbiterDisputeId, true);
    }

    // ------------------------------------------------------------------ internal

    /// @dev An open job that can still take rounds (posting one when there is none).
    function _openJob(uint256 seed) internal returns (uint256) {
        uint256 n = jobIds.length;
        for (uint256 t; t < n; ++t) {
            uint256 jobId = jobIds[(seed % n + t) % n];
            IMarket.JobView memory j = market.getJob(jobId);
            if (j.status == IMarket.JobStatus.Open && block.timestamp < j.deadline && j.unitsCommitted < j.maxUnits) {
                return jobId;
            }
        }
        postJob(seed, seed >> 8, seed >> 16);
        return jobIds[jobIds.length - 1];
    }

    /// @dev An open dispute (0 when none).
    function _openDispute(uint256 seed) internal view returns (uint256) {
        uint256 n = disputeIds.length;
        for (uint256 t; t < n; ++t) {
            uint256 id = disputeIds[(seed % n + t) % n];
            if (market.getDispute(id).status == IMarket.DisputeStatus.Open) return id;
        }
        return 0;
    }

    function _resolveChecked(uint256 id, IMarket.DisputeView memory d, uint256 arbiterId, bool timeout) internal {
        IMarket.StakeView memory before = market.getStake(d.worker, 1);
        uint256 escrowBefore = market.getJob(d.jobId).escrow;
        uint256 juryBefore = token.balanceOf(address(jury));
        if (timeout) market.timeoutDispute(id);
        else jury.resolve(arbiterId);
        ++ghostRulings;
        IMarket.StakeView memory afterS = market.getStake(d.worker, 1);
        uint256 stakeBefore = before.active + before.unbonding;
        uint256 stakeAfter = afterS.active + afterS.unbonding;
        uint256 expected;
        if (market.getDispute(id).ruling == 2) expected = stakeBefore * market.params().slashBps / 10_000;
        // a slash is exactly slashBps of the stake, never more than the stake, and only on ruling 2
        if (stakeAfter > stakeBefore || stakeBefore - stakeAfter != expected || expected > stakeBefore) {
            ghostOverSlash = true;
        }
        if (stakeAfter < stakeBefore) ++ghostSlashes;
        ghostReturned[d.jobId] += market.getJob(d.jobId).escrow - escrowBefore;
        ghostOut += token.balanceOf(address(jury)) - juryBefore;
    }

    function _fund(address who, uint256 amount) internal {
        token.mint(who, amount);
        vm.prank(who);
        token.approve(address(market), type(uint256).max);
    }

    function _traceLeaf(uint256 jobId, uint256 round, uint256 unit, uint256 step)
        internal
        pure
        returns (IMarket.TraceLeaf memory)
    {
        return IMarket.TraceLeaf({
            step: step,
            batchDigest: keccak256(abi.encode("b", jobId, round, unit, step)),
            stateDigest: keccak256(abi.encode("s", jobId, round, unit, step)),
            lossBits: uint64(step + 1)
        });
    }

    function _traceHashes(uint256 jobId, uint256 round, uint256 unit) internal pure returns (bytes32[] memory h) {
        h = new bytes32[](STEPS);
        for (uint256 s; s < STEPS; ++s) {
            IMarket.TraceLeaf memory l = _traceLeaf(jobId, round, unit, s);
            h[s] = keccak256(bytes.concat(keccak256(abi.encode(l.step, l.batchDigest, l.stateDigest, l.lossBits))));
        }
    }

    function _result(uint256 jobId, uint256 round, uint256 unit)
        internal
        view
        returns (bytes32 traceRoot, bytes32 resultHash, bytes32 inputHash)
    {
        traceRoot = Merkle.root(_traceHashes(jobId, round, unit));
        inputHash = keccak256(abi.encode("in", jobId, round, unit));
        resultHash = market.hashWorkResult(jobId, round, unit, inputHash, keccak256("out"), traceRoot);
    }

    function _evidence(RoundRef storage r, uint256 k, uint256 step) internal view returns (IMarket.Evidence memory ev) {
        (bytes32 traceRoot, bytes32 resultHash, bytes32 inputHash) = _result(r.jobId, r.round, k);
        address w = r.leafWorkers[k];
        ev.leaf = IMarket.RoundLeaf(r.jobId, r.round, k, w, r.amounts[k], resultHash);
        ev.leafProof = Merkle.proof(r.leafHashes, k);
        ev.inputHash = inputHash;
        ev.outputHash = keccak256("out");
        ev.traceRoot = traceRoot;
        uint256 key;
        for (uint256 i; i < 3; ++i) {
            if (workers[i] == w) key = workerKeys[i];
        }
        (uint8 v, bytes32 rr, bytes32 s) = vm.sign(key, resultHash);
        ev.signature = abi.encodePacked(rr, s, v);
        ev.step = step;
        bytes32[] memory th = _traceHashes(r.jobId, r.round, k);
        ev.cur = _traceLeaf(r.jobId, r.round, k, step);
        ev.curProof = Merkle.proof(th, step);
        if (step > 0) {
            ev.prev = _traceLeaf(r.jobId, r.round, k, step - 1);
            ev.prevProof = Merkle.proof(th, step - 1);
        }
    }
}
