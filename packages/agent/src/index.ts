export * from './forge/pod.js';
export * from './forge/policy.js';
export * from './inventory/compute.js';
