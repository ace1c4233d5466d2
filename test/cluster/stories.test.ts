import { clusterStoryPlatform } from "../support/cluster-story.ts";
import { story1 } from "../e2e/stories/story-1.ts";
import { story2 } from "../e2e/stories/story-2.ts";
import { story4 } from "../e2e/stories/story-4.ts";
import { story5 } from "../e2e/stories/story-5.ts";
import { story7 } from "../e2e/stories/story-7.ts";

// Stories 1, 2, 4, 5 and 7 with each customer's devices and calls spread over three nodes.
story1(clusterStoryPlatform);
story2(clusterStoryPlatform);
story4(clusterStoryPlatform);
story5(clusterStoryPlatform);
story7(clusterStoryPlatform);
