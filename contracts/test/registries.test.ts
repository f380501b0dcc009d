import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { builderApprovalTypedData, ModelKind, PUBLISHER_ROLE, REGISTRAR_ROLE } from "@openledger/chain";
import { type Hex, keccak256, toHex } from "viem";
import { addr, expectRevert, loadFixture, OPEN, type Platform, platformFixture } from "./helpers.ts";

const ROOT = keccak256(toHex("rows v1"));
const ZERO32: Hex = `0x${"00".repeat(32)}`;
const ZERO_ADDR = "0x0000000000000000000000000000000000000000";

async function withDatanet(p: Platform) {
  const datanets = await p.at("DatanetRegistry", p.alice);
  await datanets.write.createDatanet(["ipfs://datanet-1"]);
  await datanets.write.publishVersion([1n, ROOT, 100n, 7n]);
  return datanets;
}

function registration(contentHash: Hex, overrides: Partial<Record<string, unknown>> = {}) {
  return {
    kind: ModelKind.Adapter,
    contentHash,
    baseModel: keccak256(toHex("SmolLM-135M")),
    trainedOn: [{ datanetId: 1n, version: 1 }],
    pricePer1kInput: 2n * 10n ** 15n,
    pricePer1kOutput: 6n * 10n ** 15n,
    metadataURI: "ipfs://adapter",
    ...overrides,
  } as const;
}

describe("DatanetRegistry", () => {
  it("creates datanets and publishes immutable, numbered versions", async () => {
    const p = await loadFixture(platformFixture);
    const datanets = await withDatanet(p);
    assert.equal(await datanets.read.datanetCount(), 1n);
    const d = await datanets.read.getDatanet([1n]);
    assert.equal(d.owner, addr(p.alice));
    assert.equal(d.metadataURI, "ipfs://datanet-1");
    assert.equal(d.versionCount, 1);
    const v = await datanets.read.getVersion([1n, 1]);
    assert.equal(v.rowsRoot, ROOT);
    assert.equal(v.rowCount, 100n);
    assert.equal(v.contributorCount, 7n);
    assert.equal(await datanets.read.versionExists([1n, 1]), true);
    assert.equal(await datanets.read.versionExists([1n, 2]), false);
    const ev = (await datanets.getEvents.DatanetVersionPublished()).at(-1)!;
    assert.equal(ev.args.version, 1);
    await datanets.write.publishVersion([1n, keccak256(toHex("rows v2")), 150n, 9n]);
    assert.equal((await datanets.read.getVersion([1n, 1])).rowsRoot, ROOT, "v1 unchanged by v2");
    assert.equal((await datanets.read.getDatanet([1n])).versionCount, 2);
  });

  it("lets the publisher service act for owners, nobody else", async () => {
    const p = await loadFixture(platformFixture);
    await withDatanet(p);
    const publisher = await p.at("DatanetRegistry", p.operator);
    await publisher.write.createDatanetFor([addr(p.bob), "ipfs://bob"]);
    assert.equal((await publisher.read.getDatanet([2n])).owner, addr(p.bob));
    await publisher.write.publishVersion([2n, ROOT, 1n, 1n]);
    await publisher.write.setMetadataURI([1n, "ipfs://renamed"]);
    const asBob = await p.at("DatanetRegistry", p.bob);
    await expectRevert(asBob.write.createDatanetFor([addr(p.bob), "x"]), "AccessControlUnauthorizedAccount", [
      addr(p.bob),
      PUBLISHER_ROLE,
    ]);
    await expectRevert(asBob.write.publishVersion([1n, ROOT, 1n, 1n]), "NotDatanetOwner", [1n, addr(p.bob)]);
    await expectRevert(asBob.write.setMetadataURI([1n, "x"]), "NotDatanetOwner");
    await expectRevert(publisher.write.transferDatanetOwnership([1n, addr(p.bob)]), "NotDatanetOwner");
  });

  it("rejects invalid input", async () => {
    const p = await loadFixture(platformFixture);
    const datanets = await withDatanet(p);
    await expectRevert(datanets.write.createDatanet([""]), "EmptyMetadataURI");
    const publisher = await p.at("DatanetRegistry", p.operator);
    await expectRevert(publisher.write.createDatanetFor([ZERO_ADDR, "x"]), "ZeroAddress");
    await expectRevert(datanets.write.publishVersion([1n, ZERO32, 1n, 1n]), "ZeroRoot");
    await expectRevert(datanets.write.publishVersion([1n, ROOT, 0n, 0n]), "ZeroRows");
    await expectRevert(datanets.write.publishVersion([1n, ROOT, 5n, 6n]), "InvalidContributorCount");
    await expectRevert(datanets.write.publishVersion([1n, ROOT, 5n, 0n]), "InvalidContributorCount");
    await expectRevert(datanets.write.publishVersion([9n, ROOT, 5n, 1n]), "UnknownDatanet", [9n]);
    await expectRevert(datanets.read.getDatanet([9n]), "UnknownDatanet");
    await expectRevert(datanets.read.getVersion([1n, 5]), "UnknownDatanet");
    await expectRevert(datanets.write.setMetadataURI([1n, ""]), "EmptyMetadataURI");
    await expectRevert(datanets.write.transferDatanetOwnership([1n, ZERO_ADDR]), "ZeroAddress");
  });

  it("transfers ownership", async () => {
    const p = await loadFixture(platformFixture);
    const datanets = await withDatanet(p);
    await datanets.write.setMetadataURI([1n, "ipfs://v2"]);
    assert.equal((await datanets.read.getDatanet([1n])).metadataURI, "ipfs://v2");
    await datanets.write.transferDatanetOwnership([1n, addr(p.bob)]);
    assert.equal((await datanets.read.getDatanet([1n])).owner, addr(p.bob));
    await expectRevert(datanets.write.publishVersion([1n, ROOT, 1n, 1n]), "NotDatanetOwner");
  });
});

describe("ModelRegistry", () => {
  it("registers an adapter with provenance and prices", async () => {
    const p = await loadFixture(platformFixture);
    await withDatanet(p);
    const models = await p.at("ModelRegistry", p.bob);
    const hash = keccak256(toHex("adapter files"));
    await models.write.registerModel([registration(hash)]);
    assert.equal(await models.read.modelCount(), 1n);
    assert.equal(await models.read.modelIdByContentHash([hash]), 1n);
    const m = await models.read.getModel([1n]);
    assert.equal(m.owner, addr(p.bob));
    assert.equal(m.kind, ModelKind.Adapter);
    assert.equal(m.pricePer1kOutput, 6n * 10n ** 15n);
    assert.equal(m.retired, false);
    const refs = await models.read.getTrainingData([1n]);
    assert.deepEqual(
      refs.map((r) => [r.datanetId, r.version]),
      [[1n, 1]],
    );
    const ev = (await models.getEvents.ModelRegistered()).at(-1)!;
    assert.equal(ev.args.contentHash, hash);
    assert.equal(ev.args.trainedOn?.length, 1);
  });

  it("rejects invalid registrations", async () => {
    const p = await loadFixture(platformFixture);
    await withDatanet(p);
    const models = await p.at("ModelRegistry", p.bob);
    const hash = keccak256(toHex("a"));
    await expectRevert(models.write.registerModel([registration(ZERO32)]), "ZeroContentHash");
    await expectRevert(
      models.write.registerModel([registration(hash, { baseModel: ZERO32 })]),
      "AdapterNeedsBaseModel",
    );
    await expectRevert(
      models.write.registerModel([registration(hash, { kind: ModelKind.Model })]),
      "ModelCannotHaveBaseModel",
    );
    await expectRevert(
      models.write.registerModel([registration(hash, { trainedOn: [{ datanetId: 1n, version: 2 }] })]),
      "UnknownDatanetVersion",
      [1n, 2],
    );
    await models.write.registerModel([registration(hash)]);
    await expectRevert(models.write.registerModel([registration(hash)]), "DuplicateContentHash", [hash, 1n]);
    // A base model: no base, no provenance required.
    await models.write.registerModel([
      registration(keccak256(toHex("base")), { kind: ModelKind.Model, baseModel: ZERO32, trainedOn: [] }),
    ]);
    assert.equal((await models.read.getModel([2n])).kind, ModelKind.Model);
    await expectRevert(models.read.getModel([3n]), "UnknownModel", [3n]);
  });

  it("registerModelFor is REGISTRAR_ROLE only", async () => {
    const p = await loadFixture(platformFixture);
    await withDatanet(p);
    const registrar = await p.at("ModelRegistry", p.operator);
    await registrar.write.registerModelFor([addr(p.carol), registration(keccak256(toHex("c")))]);
    assert.equal((await registrar.read.getModel([1n])).owner, addr(p.carol));
    await expectRevert(
      registrar.write.registerModelFor([ZERO_ADDR, registration(keccak256(toHex("d")))]),
      "ZeroAddress",
    );
    const asCarol = await p.at("ModelRegistry", p.carol);
    await expectRevert(
      asCarol.write.registerModelFor([addr(p.carol), registration(keccak256(toHex("e")))]),
      "AccessControlUnauthorizedAccount",
      [addr(p.carol), REGISTRAR_ROLE],
    );
  });

  it("owner updates prices, transfers, retires; retired models are frozen", async () => {
    const p = await loadFixture(platformFixture);
    await withDatanet(p);
    const models = await p.at("ModelRegistry", p.bob);
    await models.write.registerModel([registration(keccak256(toHex("m")))]);
    await models.write.updatePrices([1n, 1n * OPEN, 2n * OPEN]);
    let m = await models.read.getModel([1n]);
    assert.equal(m.pricePer1kInput, OPEN);
    assert.equal(m.pricePer1kOutput, 2n * OPEN);
    const asCarol = await p.at("ModelRegistry", p.carol);
    await expectRevert(asCarol.write.updatePrices([1n, 0n, 0n]), "NotModelOwner");
    await expectRevert(asCarol.write.retire([1n]), "NotModelOwner");
    await expectRevert(models.write.transferModelOwnership([1n, ZERO_ADDR]), "ZeroAddress");
    await models.write.transferModelOwnership([1n, addr(p.carol)]);
    await expectRevert(models.write.updatePrices([1n, 0n, 0n]), "NotModelOwner");
    await asCarol.write.retire([1n]);
    m = await models.read.getModel([1n]);
    assert.equal(m.retired, true);
    await expectRevert(asCarol.write.retire([1n]), "ModelIsRetired");
    await expectRevert(asCarol.write.updatePrices([1n, 0n, 0n]), "ModelIsRetired");
    await expectRevert(asCarol.write.transferModelOwnership([1n, addr(p.bob)]), "ModelIsRetired");
    // The admin can retire any model (abuse).
    await models.write.registerModel([registration(keccak256(toHex("n")))]);
    await p.admin("ModelRegistry", "retire", [2n]);
    assert.equal((await models.read.getModel([2n])).retired, true);
  });
});

describe("small models: only builders the datanet's owner approved", () => {
  const small = (h: string) =>
    registration(keccak256(toHex(h)), { kind: ModelKind.Model, baseModel: ZERO32 });

  it("a stranger cannot register a datanet's small model; the owner, or a builder it approved, can", async () => {
    const p = await loadFixture(platformFixture);
    const datanets = await withDatanet(p); // alice owns datanet 1
    const asBob = await p.at("ModelRegistry", p.bob);
    const registrar = await p.at("ModelRegistry", p.operator);
    await expectRevert(asBob.write.registerModel([small("squat")]), "BuilderNotApproved", [1n, addr(p.bob)]);
    // Not through the registrar service either.
    await expectRevert(registrar.write.registerModelFor([addr(p.bob), small("squat")]), "BuilderNotApproved");
    // Adapters stay open to anyone (span attribution pays the rows they reproduce).
    await asBob.write.registerModel([registration(keccak256(toHex("adapter")))]);
    // The owner itself may.
    await (await p.at("ModelRegistry", p.alice)).write.registerModel([small("alice's own")]);
    // Only the owner approves; the publisher service cannot.
    await expectRevert(
      (await p.at("DatanetRegistry", p.operator)).write.approveBuilder([1n, addr(p.bob), true]),
      "NotDatanetOwner",
    );
    await datanets.write.approveBuilder([1n, addr(p.bob), true]);
    assert.equal(await datanets.read.isApprovedBuilder([1n, addr(p.bob)]), true);
    await registrar.write.registerModelFor([addr(p.bob), small("bob's")]);
    await datanets.write.approveBuilder([1n, addr(p.bob), false]);
    await expectRevert(asBob.write.registerModel([small("again")]), "BuilderNotApproved");
  });

  it("an approval signed by the owner is relayed by anyone, once, before its deadline", async () => {
    const p = await loadFixture(platformFixture);
    await withDatanet(p);
    const registry = p.addresses.contracts.DatanetRegistry;
    const chainId = await p.publicClient.getChainId();
    const relay = await p.at("DatanetRegistry", p.operator);
    const deadline = (await p.publicClient.getBlock()).timestamp + 3600n;
    const sign = async (signer: typeof p.alice, message: Parameters<typeof builderApprovalTypedData>[2]) =>
      signer.signTypedData({
        account: signer.account,
        ...builderApprovalTypedData(chainId, registry, message),
      });
    const msg = { datanetId: 1n, builder: addr(p.bob), approved: true, nonce: 0n, deadline };
    // Signed by someone else than the owner: refused.
    await expectRevert(
      relay.write.approveBuilderBySig([1n, addr(p.bob), true, deadline, await sign(p.bob, msg)]),
      "InvalidApprovalSignature",
    );
    const good = await sign(p.alice, msg);
    await relay.write.approveBuilderBySig([1n, addr(p.bob), true, deadline, good]);
    assert.equal(await relay.read.isApprovedBuilder([1n, addr(p.bob)]), true);
    // The owner revokes; replaying the old approval does not undo it (its nonce is spent).
    await (await p.at("DatanetRegistry", p.alice)).write.approveBuilder([1n, addr(p.bob), false]);
    await expectRevert(
      relay.write.approveBuilderBySig([1n, addr(p.bob), true, deadline, good]),
      "InvalidApprovalSignature",
    );
    assert.equal(await relay.read.isApprovedBuilder([1n, addr(p.bob)]), false);
    const late = { ...msg, nonce: 1n, deadline: 1n };
    await expectRevert(
      relay.write.approveBuilderBySig([1n, addr(p.bob), true, 1n, await sign(p.alice, late)]),
      "ApprovalExpired",
    );
  });
});
