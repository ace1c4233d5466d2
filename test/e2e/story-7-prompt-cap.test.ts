import { storyPlatform } from "../support/story.ts";
import { story7 } from "./stories/story-7.ts";

story7(storyPlatform);
