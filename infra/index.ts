// The Pulumi program (Pulumi.yaml `main`): the only module that creates resources at top level.
import { runProgram } from "./program.ts";

const outputs = await runProgram();

export const preview = outputs.preview;
export const bucketName = outputs.bucketName;
export const replicaBucketName = outputs.replicaBucketName;
export const workerScriptName = outputs.workerScriptName;
export const workerUrl = outputs.workerUrl;
export const workerVersionId = outputs.workerVersionId;
export const backupCronJobId = outputs.backupCronJobId;
export const drillCronJobId = outputs.drillCronJobId;
export const alarmArns = outputs.alarmArns;
export const alarmTopicArn = outputs.alarmTopicArn;
export const dashboardUrl = outputs.dashboardUrl;
export const serverToken = outputs.serverToken;
export const adminToken = outputs.adminToken;
