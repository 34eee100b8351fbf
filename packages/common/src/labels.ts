/** Labels, annotations and taints Spillway puts on objects. */
export const LABEL_ORIGIN_CLUSTER = 'spillway.io/origin-cluster';
export const LABEL_ORIGIN_UID = 'spillway.io/origin-uid';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'spillway';
export const LABEL_TENANT = 'spillway.io/tenant';
export const LABEL_REFLECTED = 'spillway.io/reflected';

export const ANNOTATION_ORIGIN_NAMESPACE = 'spillway.io/origin-namespace';
export const ANNOTATION_ORIGIN_NAME = 'spillway.io/origin-name';
export const ANNOTATION_RESERVATION = 'spillway.io/reservation';
/** On an origin pod: which donor runs it, and the remote pod's namespace/name. */
export const ANNOTATION_DONOR = 'spillway.io/donor';
export const ANNOTATION_REMOTE_POD = 'spillway.io/remote-pod';

/** Namespace opt-in label for transparent offloading. */
export const LABEL_OFFLOAD = 'spillway.io/offload';

export const VIRTUAL_NODE_TAINT_KEY = 'spillway.io/virtual-node';
export const VIRTUAL_NODE_LABEL_TYPE = 'type';
export const VIRTUAL_NODE_TYPE_VALUE = 'virtual-kubelet';
export const LABEL_DONOR = 'spillway.io/donor';

export const FINALIZER = 'spillway.io/offload';
