import type { Queue } from "bullmq";

export interface FailedJobView {
  id: string;
  name: string;
  data: unknown;
  attemptsMade: number;
  failedReason: string;
  finishedOn: number | undefined;
}

/** The failed set of a queue, newest first: poisoned jobs stay visible here. */
export async function listFailed(queue: Queue, limit = 100): Promise<FailedJobView[]> {
  const jobs = await queue.getFailed(0, limit - 1);
  return jobs.map((j) => ({
    id: j.id ?? "",
    name: j.name,
    data: j.data,
    attemptsMade: j.attemptsMade,
    failedReason: j.failedReason,
    finishedOn: j.finishedOn,
  }));
}

/** Re-drives failed jobs back to waiting (after the cause was fixed). */
export async function redriveFailed(queue: Queue, count = 1000): Promise<void> {
  await queue.retryJobs({ state: "failed", count });
}

export async function queueDepth(queue: Queue) {
  return queue.getJobCounts("waiting", "active", "delayed", "failed", "completed", "prioritized");
}
